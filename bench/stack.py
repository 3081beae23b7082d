"""The system under test, started the way start.sh and the e2e tests start it, on free ports.

A Stack owns one Redis and the project's components/ folder rewritten to point at it; sidecars
and services are added to it and all stop with the run's ProcessSet.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sidecar.localredis import redis_answers, start_redis

from .procs import PYTHON, Proc, ProcessSet, free_port, http_ok, wait_for
from .results import NotRun

ORCHESTRATOR = "job-orchestrator"
MICROSERVICE_X = "microservice-x"
_DEFAULT_REDIS = re.compile(r"127\.0\.0\.1:6379\b|localhost:6379\b")
READY_SECONDS = 60.0


@dataclass
class Sidecar:
    proc: Proc
    app_id: str
    http_port: int
    grpc_port: int

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@dataclass
class Service:
    """A service process and the sidecar that serves it."""

    proc: Proc
    sidecar: Sidecar
    port: int
    stats_port: int | None = None  #: the call-counting proxy's, when counted

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Stack:
    """One Redis with the project's components pointed at it, and the processes using them."""

    def __init__(self, procs: ProcessSet, root: Path, workdir: Path) -> None:
        self.procs = procs
        self.root = root
        workdir.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        popen = start_redis(self.redis_port, workdir / "redis", appendonly=False)
        self.redis = procs.adopt("redis", popen, workdir / "redis" / "redis.log")
        self.resources = workdir / "components"
        write_components(root / "components", self.resources, self.redis_port)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def redis_alive(self) -> bool:
        return redis_answers(self.redis_port)

    def sidecar(
        self, app_id: str, app_port: int | None = None, resources: Path | None = None
    ) -> Sidecar:
        """Start `python -m sidecar` for app_id (not waiting for it), on the stack's components
        unless given other ``resources``."""
        http_port, grpc_port = free_port(), free_port()
        folder = resources or self.resources
        args = [PYTHON, "-m", "sidecar", "--app-id", app_id, "--dapr-http-port", str(http_port)]
        args += ["--dapr-grpc-port", str(grpc_port), "--resources-path", str(folder)]
        args += ["--metrics-port", str(free_port())]
        args += ["--log-level", "warn"]
        if app_port is not None:
            args += ["--app-port", str(app_port)]
        proc = self.procs.start(f"sidecar-{app_id}", args)
        return Sidecar(proc, app_id, http_port, grpc_port)

    def service(
        self, module: str, app_id: str, env: dict[str, str] | None = None, *, counted: bool = False
    ) -> Service:
        """Start a service and its sidecar, as `dapr run` would (not waiting for them).

        counted: put bench.callcount proxies between them, to count the calls each way.
        """
        port = free_port()
        stats_port = None
        if counted:
            app_side, grpc_side, http_side, stats_port = (free_port() for _ in range(4))
            sidecar = self.sidecar(app_id, app_side)
            proxy = [PYTHON, "-m", "bench.callcount", "--stats-port", str(stats_port)]
            proxy += ["--grpc", f"{grpc_side}:{sidecar.grpc_port}"]
            proxy += ["--http", f"app->sidecar http:{http_side}:{sidecar.http_port}"]
            proxy += ["--http", f"sidecar->app:{app_side}:{port}"]
            self.procs.start(f"callcount-{app_id}", proxy)
            dapr_http, dapr_grpc = http_side, grpc_side
        else:
            sidecar = self.sidecar(app_id, port)
            dapr_http, dapr_grpc = sidecar.http_port, sidecar.grpc_port
        app_env = {
            "APP_ID": app_id,
            "APP_HOST": "127.0.0.1",
            "APP_PORT": str(port),
            "DAPR_HTTP_PORT": str(dapr_http),
            "DAPR_GRPC_PORT": str(dapr_grpc),
            "APP_PROTOCOL": "http",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        proc = self.procs.start(module, [PYTHON, "-m", module], app_env)
        return Service(proc, sidecar, port, stats_port)

    def orchestrator(self, env: dict[str, str] | None = None, *, counted: bool = False) -> Service:
        return self.service("job_orchestrator", ORCHESTRATOR, env, counted=counted)

    def microservice_x(self, *, counted: bool = False) -> Service:
        return self.service("microservice_x", MICROSERVICE_X, counted=counted)


def wait_sidecar_outbound(sidecar: Sidecar) -> None:
    """An app-less sidecar is usable once its outbound health answers 204."""
    ready = partial(http_ok, f"http://127.0.0.1:{sidecar.http_port}/v1.0/healthz/outbound")
    wait_for(sidecar.proc.name, ready, timeout=READY_SECONDS, procs=[sidecar.proc])


def wait_services(services: list[Service]) -> None:
    """Wait until every app answers /healthz and every sidecar /v1.0/healthz (app connected)."""
    everything = [p for s in services for p in (s.proc, s.sidecar.proc)]
    for svc in services:
        app_health = partial(http_ok, f"{svc.url}/healthz")
        wait_for(svc.proc.name, app_health, timeout=READY_SECONDS, procs=everything)
        side_health = partial(http_ok, f"http://127.0.0.1:{svc.sidecar.http_port}/v1.0/healthz")
        wait_for(svc.sidecar.proc.name, side_health, timeout=READY_SECONDS, procs=everything)


def write_components(source: Path, target: Path, redis_port: int) -> None:
    """Copy the top-level component YAML files, pointing every Redis address at redis_port."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            text = _DEFAULT_REDIS.sub(f"127.0.0.1:{redis_port}", path.read_text())
            (target / path.name).write_text(text)


def require_runnable(module: str) -> None:
    """Raise NotRun when `python -m module` cannot work yet (no __main__ in the tree)."""
    try:
        found = importlib.util.find_spec(f"{module}.__main__") is not None
    except ImportError:
        found = False
    if not found:
        raise NotRun(f"`python -m {module}` is not available yet (no {module}/__main__.py)")
