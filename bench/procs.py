"""Child processes of a benchmark run: own process groups, log files, readiness and CPU/memory.

Every process the benchmark starts is registered in a ProcessSet, whose stop_all() kills the
process groups, so nothing outlives the run even on Ctrl-C or an exception.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PYTHON = sys.executable
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
STOP_SECONDS = 5.0


#: Ports this process handed out: the kernel may offer a port again once its probe socket is
#: closed, before the child given it the first time has bound it (an app and its sidecar then
#: collide: "address already in use").
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and no earlier call returned."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no fresh port after 1000 tries ({len(_handed_out)} handed out)")


class Proc:
    """A child in its own session (process group), its output in a log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}; log tail:\n{self.log_tail()}"
            )

    def terminate(self) -> None:
        """Ask the whole group to stop (SIGTERM)."""
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)

    def finish(self, deadline: float) -> None:
        """Wait for the group leader until deadline (monotonic), then SIGKILL the group."""
        try:
            self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not exit on SIGTERM in time; killing it", self.name)
        # Workers forked by the child (Celery's pool) may outlive their parent.
        _signal_group(self.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM the group, SIGKILL what is left after timeout."""
        self.terminate()
        self.finish(time.monotonic() + timeout)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ProcessSet:
    """The processes of one run, stopped together (newest first) by stop_all()."""

    def __init__(self, log_dir: Path, cwd: Path) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        self.procs: list[Proc] = []
        self._names: set[str] = set()
        #: CPU seconds of each stopped process over its life, by name.
        self.cpu_totals: dict[str, float] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        unique = name
        for n in range(2, 1000):
            if unique not in self._names:
                break
            unique = f"{name}-{n}"
        self._names.add(unique)
        log_path = self.log_dir / f"{unique}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                list(args),
                env={**os.environ, **(env or {})},
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.debug("started %s (pid %s): %s", unique, popen.pid, " ".join(args))
        return self.adopt(unique, popen, log_path)

    def adopt(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> Proc:
        """Take charge of a child started elsewhere (in its own session) so stop_all stops it."""
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self, keep: Collection[Proc] = ()) -> None:
        """SIGTERM every group (but those in keep) at once, then give them STOP_SECONDS
        together before SIGKILL."""
        stopping = [p for p in self.procs if p not in keep]
        for proc in stopping:
            # Each process's whole-life CPU, kept for the run's records before it goes.
            self.cpu_totals[proc.name] = round(cpu_seconds(proc.pid), 2)
            proc.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for proc in stopping:
            proc.finish(deadline)
        self.procs = [p for p in self.procs if p in keep]


def wait_for(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    procs: Sequence[Proc] = (),
    interval: float = 0.05,
) -> None:
    """Poll check() until true; fail at once if one of procs died, or after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            proc.check_alive()
        if check():
            return
        time.sleep(interval)
    tails = "\n".join(f"--- {p.name}:\n{p.log_tail(1500)}" for p in procs)
    raise TimeoutError(f"{what} not ready within {timeout:.0f} s\n{tails}")


def http_ok(url: str, expect: Sequence[int] = (200, 204)) -> bool:
    """Whether url answers one of the expected statuses now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) in expect
    except urllib.error.HTTPError as exc:
        return exc.code in expect
    except OSError:
        return False


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _group_stats(pgid: int) -> list[list[str]]:
    """The /proc/<pid>/stat fields (after the command name) of every process in group pgid."""
    rows = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; fields resume after its closing parenthesis.
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            rows.append(fields)
    return rows


def cpu_seconds(pgid: int) -> float:
    """User + system CPU time of a process group (reaped children included), in seconds."""
    total = 0
    for fields in _group_stats(pgid):
        # utime, stime, cutime, cstime are fields 14-17 of stat, 11-14 after the name.
        total += sum(int(v) for v in fields[11:15])
    return total / _CLOCK_TICKS


def rss_bytes(pgid: int) -> int:
    """Resident memory of a process group."""
    return sum(int(fields[21]) * _PAGE_SIZE for fields in _group_stats(pgid))
