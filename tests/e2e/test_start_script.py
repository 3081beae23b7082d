"""`./start.sh` brings the pair up on the ports it is given; Ctrl-C lets running jobs finish or
hands them back, then leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis

from sidecar.localredis import start_redis
from tests.procs import ROOT, free_port, wait_until, wait_until_http

pytestmark = pytest.mark.e2e


def _processes_with(marker: str) -> list[int]:
    """Pids whose environment carries ``marker`` (every child of start.sh inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found


def _post_json(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, object] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as exc:  # say what the service answered
        raise AssertionError(f"POST {url}: {exc.code} {exc.read()[:1000]!r}") from exc


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def _drain(terminal: int, into: bytearray) -> threading.Thread:
    """Read start.sh's terminal as a user's screen would, so its output never fills the pty
    and blocks the processes writing to it; the bytes are kept for the failure report."""

    def read() -> None:
        while True:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the terminal closed: everything on it has exited
                return
            if not chunk:
                return
            into.extend(chunk)

    reader = threading.Thread(target=read, name="start.sh terminal", daemon=True)
    reader.start()
    return reader


def _signal_state(pid: int) -> str:
    """What the kernel says of a process's signals and where it sleeps (seen once in a full
    run: start.sh still running 45 s after Ctrl-C, its runner never told to stop)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError as exc:
        return f"/proc/{pid}: {exc}"
    wanted = ("State", "SigQ", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    return "\n".join([*(line for line in status if line.startswith(wanted)), f"wchan: {wchan}"])


def _stored_jobs(port: int, job_ids: list[str]) -> list[dict[str, object]]:
    """The orchestrator's records as start.sh's Redis kept them (append-only files), read by
    starting a Redis on its folder once everything has stopped."""
    server = start_redis(port, ROOT / "data" / f"redis-{port}")
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        records = [client.hget(f"job-orchestrator||job-{job_id}", "data") for job_id in job_ids]
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return [json.loads(record) for record in records if record is not None]


_PORT_NAMES = (
    "REDIS_PORT",
    "ORCHESTRATOR_PORT",
    "ORCHESTRATOR_DAPR_HTTP_PORT",
    "ORCHESTRATOR_DAPR_GRPC_PORT",
    "MICROSERVICE_X_PORT",
    "MICROSERVICE_X_DAPR_HTTP_PORT",
    "MICROSERVICE_X_DAPR_GRPC_PORT",
)


@pytest.mark.timeout(180)
def test_start_runs_the_pair_and_ctrl_c_stops_everything() -> None:
    ports = {name: free_port() for name in _PORT_NAMES}
    marker = f"START_SH_TEST_MARKER={uuid.uuid4().hex}"
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "DAPR_RUNTIME": "local",
        marker.split("=")[0]: marker.split("=")[1],
    }
    pid, terminal = pty.fork()
    if pid == 0:  # the child: start.sh on a terminal, as a user runs it
        os.chdir(ROOT)
        os.execve(str(ROOT / "start.sh"), [str(ROOT / "start.sh")], env)
    screen = bytearray()
    reader = _drain(terminal, screen)
    try:
        orchestrator = f"http://127.0.0.1:{ports['ORCHESTRATOR_PORT']}"
        microservice = f"http://127.0.0.1:{ports['MICROSERVICE_X_PORT']}"
        wait_until_http(f"{orchestrator}/docs", timeout=90)
        # Ready, not just alive: each app's sidecar answers (an app may start before its
        # sidecar has loaded its components, and a call then is a 503 with Retry-After).
        wait_until_http(f"{orchestrator}/readyz", timeout=30)
        wait_until_http(f"{microservice}/readyz", timeout=30)
        started = _post_json(f"{microservice}/jobs", {"type": "wait", "input": {"seconds": 0.2}})
        job_url = f"{microservice}/jobs/{started['id']}"
        deadline = time.monotonic() + 30
        status = ""
        while time.monotonic() < deadline and status != "Completed":
            try:
                with urllib.request.urlopen(job_url, timeout=5) as response:
                    status = json.loads(response.read())["status"]
            except urllib.error.HTTPError as exc:
                assert exc.code == 404  # its first event has not arrived yet
            time.sleep(0.1)
        assert status == "Completed"
        assert len(_processes_with(marker)) >= 6  # redis, runner, 2 sidecars, 2 apps

        # Running at Ctrl-C: one job within the orchestrator's 10 s grace, one far beyond it.
        running = [
            str(_post_json(f"{orchestrator}/jobs", {"input": {"seconds": s}})["id"])
            for s in (3, 120)
        ]
        wait_until(
            lambda: all(
                _get_json(f"{orchestrator}/jobs/{job_id}")["status"] == "InProgress"
                for job_id in running
            ),
            timeout=20,
        )
        os.write(terminal, b"\x03")  # Ctrl-C
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"start.sh did not exit within 45 s of Ctrl-C\n{_signal_state(pid)}")
        leftovers_deadline = time.monotonic() + 10
        while _processes_with(marker) and time.monotonic() < leftovers_deadline:
            time.sleep(0.1)
        assert _processes_with(marker) == []

        # Redis outlived the apps: the short job's completion landed, and the long one was
        # handed back (lease ended), for the next run's orchestrator to take over at once.
        finished, handed = _stored_jobs(ports["REDIS_PORT"], running)
        assert finished["status"] == "Completed", finished
        assert (handed["status"], handed["handedBack"]) == ("InProgress", True), handed
    except BaseException:
        sys.stderr.write(f"start.sh printed:\n{screen.decode(errors='replace')}\n")
        raise
    finally:
        # Redis rewrites its own environ (process title), so the marker does not find it: ask
        # it to stop, in case start.sh was killed before it could.
        with contextlib.suppress(redis.RedisError, OSError):
            redis.Redis(port=ports["REDIS_PORT"], socket_timeout=2).shutdown(nosave=True)
        for leftover in [pid, *_processes_with(marker)]:
            try:
                os.kill(leftover, 9)
            except (ProcessLookupError, ChildProcessError):
                pass
        reader.join(timeout=10)  # ends once every process on the terminal is gone (EIO)
        os.close(terminal)
        shutil.rmtree(ROOT / "data" / f"redis-{ports['REDIS_PORT']}", ignore_errors=True)


@pytest.mark.timeout(120)
def test_start_stops_everything_when_an_app_cannot_start() -> None:
    """A bad JOB_HANDLERS makes the orchestrator exit with code 2 at start. The runner (like
    `dapr run -f`) would keep the rest running half-started; start.sh stops it all instead."""
    ports = {name: free_port() for name in _PORT_NAMES}
    marker = f"START_SH_TEST_MARKER={uuid.uuid4().hex}"
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "DAPR_RUNTIME": "local",
        "JOB_HANDLERS": "no_such_module_here:jobs",
        marker.split("=")[0]: marker.split("=")[1],
    }
    started = subprocess.Popen(
        [str(ROOT / "start.sh")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = started.communicate(timeout=90)
        printed = output.decode(errors="replace")
        assert started.returncode == 1, printed
        assert "cannot import no_such_module_here" in printed
        assert "the pair did not start; stopping everything" in printed
        deadline = time.monotonic() + 10
        while _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_with(marker) == []
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{ports['MICROSERVICE_X_PORT']}/healthz")
    finally:
        with contextlib.suppress(redis.RedisError, OSError):
            redis.Redis(port=ports["REDIS_PORT"], socket_timeout=2).shutdown(nosave=True)
        for leftover in [started.pid, *_processes_with(marker)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, 9)
        started.wait(timeout=10)
        shutil.rmtree(ROOT / "data" / f"redis-{ports['REDIS_PORT']}", ignore_errors=True)
