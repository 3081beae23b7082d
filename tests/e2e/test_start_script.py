"""`./start.sh` brings the pair up on the ports it is given (with exactly today's components);
Ctrl-C lets running jobs finish or hands them back, then leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from sidecar.localredis import redis_answers, start_redis
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


def _stored_jobs(port: int, job_ids: list[str]) -> tuple[list[dict[str, object]], bytes]:
    """The orchestrator's records as start.sh's Redis kept them (append-only files), and the
    queue's messages still pending (not acknowledged) for the orchestrators, read by starting a
    Redis on its folder once everything has stopped."""
    server = start_redis(port, ROOT / "data" / f"redis-{port}")
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        records = [client.hget(f"job-orchestrator||job-{job_id}", "data") for job_id in job_ids]
        pending = client.xpending_range("job-events", "job-orchestrator", "-", "+", 100)
        messages = [
            repr(client.xrange("job-events", entry["message_id"], entry["message_id"])).encode()
            for entry in pending
        ]
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return [json.loads(record) for record in records if record is not None], b"".join(messages)


PORT_NAMES = (
    "REDIS_PORT",
    "ORCHESTRATOR_PORT",
    "ORCHESTRATOR_DAPR_HTTP_PORT",
    "ORCHESTRATOR_DAPR_GRPC_PORT",
    "ORCHESTRATOR_DAPR_METRICS_PORT",
    "MICROSERVICE_X_PORT",
    "MICROSERVICE_X_DAPR_HTTP_PORT",
    "MICROSERVICE_X_DAPR_GRPC_PORT",
    "MICROSERVICE_X_DAPR_METRICS_PORT",
)

#: A component that was in components/ once: the copy start.sh runs with must not keep it.
_STALE_COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: state.in-memory
  version: v1
"""


@pytest.mark.timeout(180)
def test_start_runs_the_pair_and_ctrl_c_stops_everything() -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    marker = f"START_SH_TEST_MARKER={uuid.uuid4().hex}"
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "DAPR_RUNTIME": "local",
        marker.split("=")[0]: marker.split("=")[1],
    }
    stale = f"removed-{uuid.uuid4().hex[:8]}"
    copies = ROOT / "data" / "run" / str(ports["ORCHESTRATOR_PORT"]) / "components"
    copies.mkdir(parents=True, exist_ok=True)
    (copies / f"{stale}.yaml").write_text(_STALE_COMPONENT.format(name=stale))
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
        sidecar = f"http://127.0.0.1:{ports['ORCHESTRATOR_DAPR_HTTP_PORT']}"
        components = [c["name"] for c in _get_json(f"{sidecar}/v1.0/metadata")["components"]]
        assert "statestore" in components
        assert stale not in components
        # The run's copy is its own: another run on other ports writes to another folder.
        assert (copies / "statestore.yaml").is_file()
        assert (copies.parent / "dapr.yaml").is_file()
        # Each sidecar serves its metrics on the port it was given.
        for name in ("ORCHESTRATOR_DAPR_METRICS_PORT", "MICROSERVICE_X_DAPR_METRICS_PORT"):
            with urllib.request.urlopen(
                f"http://127.0.0.1:{ports[name]}/metrics", timeout=10
            ) as page:
                assert page.status == 200
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
        (finished, handed), pending = _stored_jobs(ports["REDIS_PORT"], running)
        assert finished["status"] == "Completed", finished
        assert (handed["status"], handed["handedBack"]) == ("InProgress", True), handed
        # Its queue message is still pending (the sidecar, stopped while it retried the
        # delivery, did not acknowledge it): the broker hands it to the next run's orchestrator.
        assert running[1].encode() in pending
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
    ports = {name: free_port() for name in PORT_NAMES}
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


class _StartScript:
    """``./start.sh`` (run mode) on free ports, its output collected as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.ports = {name: free_port() for name in PORT_NAMES}
        self.marker = uuid.uuid4().hex
        self.env = {
            **os.environ,
            **{name: str(port) for name, port in self.ports.items()},
            "DAPR_RUNTIME": "local",
            "START_SH_TEST_MARKER": self.marker,
            **env,
        }
        self.output = bytearray()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen(
            [str(ROOT / "start.sh")],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._reader = _drain(self.proc.stdout.fileno(), self.output)
        return self.proc

    def wait(self, timeout: float) -> int:
        """start.sh's exit code, once all it printed has been read."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)  # ends when the last process holding the pipe is gone
        return code

    @property
    def printed(self) -> str:
        return self.output.decode(errors="replace")

    def leftovers(self) -> list[int]:
        deadline = time.monotonic() + 10
        while _processes_with(f"START_SH_TEST_MARKER={self.marker}"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return _processes_with(f"START_SH_TEST_MARKER={self.marker}")

    def clean_up(self) -> None:
        redis_port = self.ports["REDIS_PORT"]
        if redis_answers(redis_port):  # start.sh was stopped before it could stop it
            with contextlib.suppress(redis.RedisError, OSError):
                redis.Redis(port=redis_port, socket_timeout=2).shutdown(nosave=True)
        pids = [] if self.proc is None else [self.proc.pid]
        for leftover in [*pids, *_processes_with(f"START_SH_TEST_MARKER={self.marker}")]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, 9)
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self._reader.join(timeout=10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        shutil.rmtree(ROOT / "data" / f"redis-{redis_port}", ignore_errors=True)


@contextlib.contextmanager
def _start_script(**env: str) -> Iterator[_StartScript]:
    script = _StartScript(env)
    try:
        yield script
    except BaseException:
        sys.stderr.write(f"start.sh printed:\n{script.printed}\n")
        raise
    finally:
        script.clean_up()


class _Healthy(BaseHTTPRequestHandler):
    """An app of the first ./start.sh: GET /healthz answers 200."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.timeout(90)
def test_start_refuses_ports_in_use() -> None:
    """A second ./start.sh while the first runs: the first one's apps would answer its health
    checks. It names each port in use and the variable that moves it, and starts nothing."""
    with contextlib.ExitStack() as stack:
        script = stack.enter_context(_start_script(START_TIMEOUT="30"))
        for name in ("ORCHESTRATOR_PORT", "MICROSERVICE_X_PORT"):
            server = ThreadingHTTPServer(("127.0.0.1", script.ports[name]), _Healthy)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
        grpc = script.ports["MICROSERVICE_X_DAPR_GRPC_PORT"]
        stack.enter_context(socket.create_server(("127.0.0.1", grpc)))

        script.start()
        code = script.wait(timeout=60)
        printed = script.printed
        assert code == 1, printed
        for name in ("ORCHESTRATOR_PORT", "MICROSERVICE_X_PORT", "MICROSERVICE_X_DAPR_GRPC_PORT"):
            assert f"port {script.ports[name]} ({name}) is in use" in printed
        assert "both services are up" not in printed
        assert not redis_answers(script.ports["REDIS_PORT"])
        assert script.leftovers() == []


@pytest.mark.timeout(120)
def test_start_stops_at_once_when_a_sidecar_cannot_start() -> None:
    """The orchestrator's sidecar exits before it listens (its gRPC port, free when start.sh
    checked, is taken by then): start.sh says which process, shows the end of its log and
    stops everything within seconds, not after START_TIMEOUT."""
    with _start_script(START_TIMEOUT="100") as script:
        grpc = script.ports["ORCHESTRATOR_DAPR_GRPC_PORT"]
        script.start()
        # Redis answers once the ports were checked, seconds before the sidecars start.
        wait_until(lambda: redis_answers(script.ports["REDIS_PORT"]), timeout=60, interval=0.02)
        with socket.create_server(("127.0.0.1", grpc)):
            taken = time.monotonic()
            code = script.wait(timeout=60)
            took = time.monotonic() - taken
        printed = script.printed
        assert code == 1, printed
        assert took < 20, printed
        assert "sidecar for app 'job-orchestrator' did not start with exit code 1" in printed
        assert f"cannot listen on gRPC 127.0.0.1:{grpc}" in printed  # the end of its log
        assert "the pair did not start; stopping everything" in printed
        assert script.leftovers() == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", script.ports["MICROSERVICE_X_PORT"]), 5)
