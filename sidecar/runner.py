"""``python -m sidecar run``: start apps with their sidecars like ``dapr run`` / ``dapr run -f``.

Each sidecar and each app runs in its own process group; Ctrl-C or SIGTERM stops them all, each
app before its sidecar so the app's last state writes and publishes still land (the Dapr CLI
stops daprd first). An app or sidecar that exits on its own is reported with its name, exit code
and, when its output went to a file only, the end of that file. One that exits before its app
listens stops every app, as ``dapr run -f`` stops all when one fails to start; once started,
the others run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sidecar.runfile import AppSpec
from sidecar.runner_logs import open_log, tail

logger = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL for an app: Kubernetes' default termination grace, so an
#: app finishing its running work (the orchestrator takes up to 10 s, then hands back) gets to.
_APP_STOP_GRACE = 30.0
#: The same for a sidecar, stopped once its app has exited (daprd's own default grace is 5 s).
_SIDECAR_STOP_GRACE = 10.0
_SIDECAR_START_TIMEOUT = 30.0
#: Lines of a failed child's log file shown when its output went to that file only.
_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1  #: prctl option, linux/prctl.h


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Ports:
    http: int
    grpc: int
    metrics: int


def sidecar_command(spec: AppSpec, ports: Ports) -> list[str]:
    args = [sys.executable, "-m", "sidecar", "--app-id", spec.app_id]
    args += ["--dapr-http-port", str(ports.http), "--dapr-grpc-port", str(ports.grpc)]
    args += ["--metrics-port", str(ports.metrics)]
    if spec.app_port is not None:
        args += ["--app-port", str(spec.app_port)]
    args += ["--app-protocol", spec.app_protocol]
    if spec.app_channel_address:
        args += ["--app-channel-address", spec.app_channel_address]
    if spec.app_health_check_path:
        args += ["--app-health-check-path", spec.app_health_check_path]
    args += spec.app_health_flags
    args += spec.number_flags
    if spec.api_logging:
        args.append("--enable-api-logging")
    if spec.log_level:
        args += ["--log-level", spec.log_level]
    for folder in spec.resources_paths:
        args += ["--resources-path", str(folder)]
    return args


def app_environment(spec: AppSpec, ports: Ports, base: Mapping[str, str]) -> dict[str, str]:
    """What ``dapr run`` gives the app: its ports, id and protocol, plus the template's env."""
    env = {**base, **spec.env}
    env.update(
        APP_ID=spec.app_id,
        DAPR_HTTP_PORT=str(ports.http),
        DAPR_GRPC_PORT=str(ports.grpc),
        APP_PROTOCOL=spec.app_protocol,
    )
    if spec.app_port is not None:
        env["APP_PORT"] = str(spec.app_port)
    return env


def _die_with_runner() -> None:
    """In the child, before exec: get SIGTERM if the runner itself dies (Linux only).

    Children run in their own sessions, so a runner killed with SIGKILL would otherwise leave
    them running; the kernel's parent-death signal closes that gap.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Output:
    """Copies a child's output, line by line, to the console (prefixed) and/or a log file."""

    def __init__(self, prefix: bytes, console: bool, log_file: BinaryIO | None) -> None:
        self.prefix = prefix
        self.console = console
        self.log_file = log_file

    @property
    def file_only(self) -> Path | None:
        """The log file, when the console shows none of the output."""
        if self.console or self.log_file is None:
            return None
        return Path(self.log_file.name)

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            if self.console:
                sys.stdout.buffer.write(self.prefix + line if self.prefix else line)
                sys.stdout.buffer.flush()
            if self.log_file is not None:
                self.log_file.write(line)
                self.log_file.flush()


class Child:
    """One process in its own group with its output pump."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, output: Output) -> None:
        self.name = name
        self.proc = proc
        self.output = output
        assert proc.stdout is not None
        self.pump = asyncio.create_task(output.pump(proc.stdout))

    @classmethod
    async def start(
        cls, name: str, args: Sequence[str], env: Mapping[str, str], cwd: Path, output: Output
    ) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *args,
            env=dict(env),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_runner if sys.platform == "linux" else None,
        )
        return cls(name, proc, output)

    async def stop(self, grace: float) -> None:
        if self.proc.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await self.proc.wait()
            except TimeoutError:
                logger.warning("%s did not stop within %ss; killing it", self.name, grace)
        # Kill what is left of the group (the app's own children included) either way.
        self._signal(signal.SIGKILL)
        await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self.pump

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)


async def wait_for_port(
    port: int,
    children: Sequence[Child],
    stop: asyncio.Event,
    timeout: float | None,
    host: str = "127.0.0.1",
) -> bool:
    """Whether ``host:port`` accepts TCP before ``timeout`` (None: no limit); False as soon as
    one of ``children`` exits or ``stop`` is set."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        if stop.is_set() or any(child.proc.returncode is not None for child in children):
            return False
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return True
    return False


class AppRun:
    """One app and its sidecar, supervised until stopped or until either exits."""

    def __init__(self, spec: AppSpec, base_env: Mapping[str, str], single: bool) -> None:
        self.spec = spec
        self.base_env = base_env
        self.single = single
        self.ports = Ports(
            spec.http_port or free_port(),
            spec.grpc_port or free_port(),
            spec.metrics_port or free_port(),
        )
        #: Set once the app listens on its port (at once for an app without one).
        self.started = asyncio.Event()
        self._files: list[BinaryIO] = []

    def _output(self, kind: str, destination: str) -> Output:
        log_file: BinaryIO | None = None
        if destination in ("file", "fileAndConsole"):
            log_file = open_log(self.spec.app_dir, self.spec.app_id, kind)
            self._files.append(log_file)
        if kind == "daprd":
            prefix = b"" if self.single else f"== DAPR - {self.spec.app_id} == ".encode()
        else:
            prefix = b"== APP == " if self.single else f"== APP - {self.spec.app_id} == ".encode()
        return Output(prefix, destination in ("console", "fileAndConsole"), log_file)

    async def run(self, stop: asyncio.Event) -> int:
        spec = self.spec
        daprd_log = "console" if self.single else spec.daprd_log
        sidecar = await Child.start(
            f"sidecar for app {spec.app_id!r}",
            sidecar_command(spec, self.ports),
            self.base_env,
            Path.cwd(),
            self._output("daprd", daprd_log),
        )
        app: Child | None = None
        try:
            if not await wait_for_port(self.ports.http, [sidecar], stop, _SIDECAR_START_TIMEOUT):
                return 0 if stop.is_set() else await self._report(sidecar, "did not start")
            logger.info(
                "app %s: sidecar HTTP port %s, gRPC port %s",
                spec.app_id,
                self.ports.http,
                self.ports.grpc,
            )
            app = await Child.start(
                f"app {spec.app_id!r}",
                spec.command,
                app_environment(spec, self.ports, self.base_env),
                spec.app_dir,
                self._output("app", spec.app_log),
            )
            # Started once it listens where its sidecar reaches it (with no port: at once).
            if spec.app_port is None or await wait_for_port(
                spec.app_port, [app, sidecar], stop, None, spec.app_channel_address or "127.0.0.1"
            ):
                self.started.set()
            waits = {
                asyncio.create_task(app.proc.wait()): app,
                asyncio.create_task(sidecar.proc.wait()): sidecar,
            }
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in [*waits, stopper]:
                task.cancel()
            exited = [waits[t] for t in done if t in waits]
            if exited and not stop.is_set():
                return await self._report(exited[0], "exited")
            return 0
        finally:
            # The app first, while its sidecar still serves it: its last writes still land.
            if app is not None:
                await app.stop(_APP_STOP_GRACE)
            await sidecar.stop(_SIDECAR_STOP_GRACE)
            for log_file in self._files:
                log_file.close()

    async def _report(self, child: Child, what: str) -> int:
        code = child.proc.returncode
        if code == 0:
            logger.info("%s exited successfully", child.name)
            return 0
        detail = f"with exit code {code}" if code is not None else "in time"
        log_path = child.output.file_only
        if log_path is None:  # its output is on the console, just above
            logger.error("%s %s %s", child.name, what, detail)
        else:
            if code is not None:  # all it wrote, before reading the file
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await asyncio.shield(child.pump)
            lines = "".join(f"\n    {line}" for line in tail(log_path, _TAIL_LINES))
            logger.error("%s %s %s; the end of %s:%s", child.name, what, detail, log_path, lines)
        return code if code is not None and code > 0 else 1


async def run_apps(specs: Sequence[AppSpec], base_env: Mapping[str, str], single: bool) -> int:
    """Run every app with its sidecar until a signal; the exit code of the first failure, or 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runs = [AppRun(spec, base_env, single) for spec in specs]

    async def supervise(run: AppRun) -> int:
        code = await run.run(stop)
        if code != 0 and not stop.is_set() and not all(r.started.is_set() for r in runs):
            logger.error("app %r failed to start: stopping every app", run.spec.app_id)
            stop.set()
        return code

    try:
        if single:
            codes = [await runs[0].run(stop)]
        else:
            codes = list(await asyncio.gather(*(supervise(r) for r in runs)))
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return next((c for c in codes if c != 0), 0)
