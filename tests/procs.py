"""Real processes for tests: free ports, process groups killed at teardown, readiness polling."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

# One registry of handed-out ports for the bench and the tests (see bench.procs.free_port).
from bench.procs import free_port as free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class ManagedProcess:
    """A child in its own process group, its output in a log file, killed at stop()."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or ROOT
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix="proc-logs-"))
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            raise AssertionError(f"{self.name} exited ({code}):\n{self.log_tail()}")

    def kill9(self) -> None:
        """kill -9 the whole process group, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


def wait_until_http(
    url: str,
    *,
    timeout: float = 30.0,
    expect: Sequence[int] = (200, 204),
    process: ManagedProcess | None = None,
) -> None:
    """Poll url until it answers one of ``expect``; fail at once if ``process`` died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None:
            process.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in expect:
                    return
                last = f"status {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    tail = process.log_tail() if process else ""
    raise TimeoutError(f"{url} not ready within {timeout}s ({last})\n{tail}")


def wait_until(predicate: object, *, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll a zero-argument callable until it returns truthy, or fail after ``timeout``."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


def postgres_bin_dir() -> Path | None:
    """Debian's PostgreSQL server binaries, if installed."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command's name (state, parent, ...)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1; runs as the ``postgres`` user when root."""

    def __init__(self, port: int) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("no PostgreSQL server binaries (apt-get install postgresql)")
        self.bin_dir = bin_dir
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.data = self.dir / "data"
        self.proc: ManagedProcess | None = None

    def _as_postgres(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def start(self) -> PostgresCluster:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            cwd="/",
        )
        return self._launch()

    def kill9(self) -> None:
        """kill -9 the server and its backends, as a crash of its machine would.

        Backends lead process groups of their own, so they are killed one by one; the lock
        files go too (a machine that crashed starts without the old processes).
        """
        if self.proc is None:
            return
        lock = self.data / "postmaster.pid"
        postmaster = int(lock.read_text().split()[0]) if lock.exists() else None
        doomed = [pid for pid in _pids() if _parent(pid) == postmaster] if postmaster else []
        self.proc.kill9()
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        pids = [*doomed, *([postmaster] if postmaster else [])]
        while any(_running(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL processes {pids} outlived kill -9")
            time.sleep(0.02)
        for path in (lock, *self.dir.glob(f".s.PGSQL.{self.port}*")):
            path.unlink(missing_ok=True)

    def restart(self) -> PostgresCluster:
        """Start the server again on its data (it recovers from a crash as it would)."""
        return self._launch()

    def _launch(self) -> PostgresCluster:
        self.proc = ManagedProcess(
            "postgres",
            self._as_postgres(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.dir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ]
            ),
            cwd=Path("/"),
            log_dir=self.dir,
        ).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.proc.check_alive()
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        raise TimeoutError("postgres did not become ready")

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_get(
    port: int, target: bytes, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """A GET on 127.0.0.1 with the request target's bytes as given: HTTP clients would escape
    them or resolve ``..`` first. Returns the status and the body."""
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), 10) as conn:
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
