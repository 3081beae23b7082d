"""``python -m sidecar run``: real runner, sidecars and apps; prefixes, SIGTERM, crashes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer
from tests.procs import PYTHON, ManagedProcess, free_port, wait_until, wait_until_http
from tests.sidecar.api.conftest import TINY_APP, component


@pytest.fixture()
def resources(tmp_path: Path, redis_server: RedisServer) -> Path:
    folder = tmp_path / "components"
    folder.mkdir()
    (folder / "c.yaml").write_text(
        component("statestore", "state.in-memory")
        + "---\n"
        + component("pubsub", "pubsub.redis", {"redisHost": redis_server.host})
    )
    return folder


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); its state in /proc tells it has exited.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def app_pids(log: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"tiny app (\S*) pid (\d+) listening", log)}


def stop_runner(runner: ManagedProcess) -> int:
    """SIGTERM to the runner alone (not its group), as a supervisor would send it."""
    assert runner.proc is not None
    os.kill(runner.pid, signal.SIGTERM)
    return runner.proc.wait(timeout=30)


def test_run_single_app(tmp_path: Path, resources: Path) -> None:
    http_port, app_port = free_port(), free_port()
    registry = tmp_path / "registry"
    runner = ManagedProcess(
        "runner",
        [
            PYTHON,
            "-m",
            "sidecar",
            "run",
            "--app-id",
            "solo",
            "--app-port",
            str(app_port),
            "--dapr-http-port",
            str(http_port),
            "--resources-path",
            str(resources),
            "--",
            PYTHON,
            str(TINY_APP),
        ],
        env={"DAPR_LOCAL_REGISTRY_DIR": str(registry)},
        log_dir=tmp_path,
    ).start()
    try:
        wait_until_http(f"http://127.0.0.1:{http_port}/v1.0/healthz", process=runner)
        echo = httpx.get(f"http://127.0.0.1:{http_port}/v1.0/invoke/solo/method/hi", timeout=10)
        assert echo.json()["path"] == "/hi"
        wait_until(lambda: "solo" in app_pids(runner.log_tail()))
        assert "== APP == tiny app solo pid" in runner.log_tail()
        app_pid = app_pids(runner.log_tail())["solo"]
        sidecar_pid = int(next(registry.glob("solo.*.json")).name.split(".")[1])
        assert stop_runner(runner) == 0
        assert pid_gone(app_pid)
        assert pid_gone(sidecar_pid)
    finally:
        runner.stop()


def test_run_reports_crashed_app(tmp_path: Path, resources: Path) -> None:
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "sidecar",
            "run",
            "--app-id",
            "crashy",
            "--app-port",
            str(free_port()),
            "--resources-path",
            str(resources),
            "--",
            PYTHON,
            "-c",
            "import sys; sys.exit(3)",
        ],
        env={**os.environ, "DAPR_LOCAL_REGISTRY_DIR": str(tmp_path / "registry")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "app 'crashy' exited with exit code 3" in result.stderr
    assert not list((tmp_path / "registry").glob("crashy.*.json"))


RUN_FILE = """\
version: 1
common:
  resourcesPaths: ["./components"]
  env:
    COMMON_VAR: "yes"
apps:
  - appID: run-a
    appDirPath: .
    appPort: {port_a}
    daprHTTPPort: {http_a}
    command: ["{python}", "{app}"]
  - appID: run-b
    appDirPath: ./b
    appPort: {port_b}
    daprHTTPPort: {http_b}
    command: ["{python}", "{app}"]
    enableProfiling: true
"""


def test_run_file_starts_every_app(tmp_path: Path, resources: Path) -> None:
    (tmp_path / "b").mkdir()
    ports = {name: free_port() for name in ("port_a", "http_a", "port_b", "http_b")}
    run_file = tmp_path / "dapr.yaml"
    run_file.write_text(RUN_FILE.format(python=PYTHON, app=TINY_APP, **ports))
    runner = ManagedProcess(
        "runner-f",
        [PYTHON, "-m", "sidecar", "run", "-f", str(run_file)],
        env={"DAPR_LOCAL_REGISTRY_DIR": str(tmp_path / "registry")},
        cwd=Path(__file__).resolve().parents[2],
        log_dir=tmp_path / "logs",
    )
    (tmp_path / "logs").mkdir()
    runner.start()
    try:
        for port in (ports["http_a"], ports["http_b"]):
            wait_until_http(f"http://127.0.0.1:{port}/v1.0/healthz", process=runner)
        across = httpx.get(
            f"http://127.0.0.1:{ports['http_a']}/v1.0/invoke/run-b/method/x", timeout=10
        )
        assert across.status_code == 200
        assert across.json()["path"] == "/x"
        wait_until(lambda: len(app_pids(runner.log_tail())) == 2)
        log = runner.log_tail()
        assert "not applied by the local sidecar" in log
        assert "apps[1].enableProfiling" in log
        assert "== APP - run-a == tiny app run-a pid" in log
        assert "== APP - run-b == tiny app run-b pid" in log
        assert list((tmp_path / "b" / ".dapr" / "logs").glob("run-b_app_*.log"))
        pids = list(app_pids(log).values())
        assert stop_runner(runner) == 0
        assert all(pid_gone(pid) for pid in pids)
        assert not list((tmp_path / "registry").glob("*.json"))
    finally:
        runner.stop()


def test_malformed_run_file(tmp_path: Path) -> None:
    run_file = tmp_path / "dapr.yaml"
    run_file.write_text("version: 1\napps:\n  - appID: x\n    command: python\n    appDirPath: .\n")
    result = subprocess.run(
        [PYTHON, "-m", "sidecar", "run", "-f", str(run_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert str(run_file) in result.stderr
    assert "apps[0].command" in result.stderr


def test_killed_runner_leaves_no_orphans(tmp_path: Path, resources: Path) -> None:
    http_port = free_port()
    registry = tmp_path / "registry"
    runner = ManagedProcess(
        "runner-k",
        [
            PYTHON,
            "-m",
            "sidecar",
            "run",
            "--app-id",
            "orphan",
            "--app-port",
            str(free_port()),
            "--dapr-http-port",
            str(http_port),
            "--resources-path",
            str(resources),
            "--",
            PYTHON,
            str(TINY_APP),
        ],
        env={"DAPR_LOCAL_REGISTRY_DIR": str(registry)},
        log_dir=tmp_path,
    ).start()
    try:
        wait_until_http(f"http://127.0.0.1:{http_port}/v1.0/healthz", process=runner)
        wait_until(lambda: "orphan" in app_pids(runner.log_tail()))
        app_pid = app_pids(runner.log_tail())["orphan"]
        sidecar_pid = int(next(registry.glob("orphan.*.json")).name.split(".")[1])
        assert runner.proc is not None
        os.kill(runner.pid, signal.SIGKILL)
        runner.proc.wait(timeout=10)
        wait_until(lambda: pid_gone(app_pid) and pid_gone(sidecar_pid), timeout=20)
    finally:
        runner.stop()
