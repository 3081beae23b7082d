"""Real processes for microservice-x tests: the sidecar, the app, and job events to feed them.

The components are the project's own (components/*.yaml) with Redis pointed at the test server,
and each stack gets its own name-resolution folder so it never finds another run's sidecars.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.procs import PYTHON, ROOT, ManagedProcess, free_port, wait_until_http

MX = "microservice-x"
STATUS_OF = {
    "job.created": "New",
    "job.updated": "InProgress",
    "job.completed": "Completed",
    "job.failed": "Failed",
    "job.canceled": "Canceled",
}


def write_components(
    target: Path, redis_host: str, redis_db: int, *, subscriptions: bool = True
) -> Path:
    """Copy the project's components/ with Redis at ``redis_host`` and quick redelivery.

    Each test module gets its own Redis database, so the `job-events` stream and the keys of one
    never reach the consumers of another sharing the session's Redis server.
    """
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted((ROOT / "components").glob("*.yaml")):
        if source.name.startswith("subscription") and not subscriptions:
            continue
        docs = [d for d in yaml.safe_load_all(source.read_text()) if d]
        for doc in docs:
            if doc.get("kind") != "Component":
                continue
            items = doc["spec"].setdefault("metadata", [])
            for item in items:
                if item["name"] == "redisHost":
                    item["value"] = redis_host
            items[:] = [i for i in items if i["name"] != "redisDB"]
            items.append({"name": "redisDB", "value": str(redis_db)})
            if doc["metadata"]["name"] == "pubsub":
                # A message taken by a killed sidecar is handed out again after 2 s, not 60 s.
                quick = {"processingTimeout": "2s", "redeliverInterval": "500ms"}
                items[:] = [i for i in items if i["name"] not in quick]
                items += [{"name": k, "value": v} for k, v in quick.items()]
        (target / source.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return target


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP call: (status, lower-cased headers, decoded JSON body or text or None)."""
    data = None
    sent = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), exc.headers
    received = {k.lower(): v for k, v in got.items()}
    if not raw:
        return status, received, None
    try:
        return status, received, json.loads(raw)
    except ValueError:
        return status, received, raw.decode(errors="replace")


def job_data(
    job_id: str, event_type: str, sequence: int, owner: str | None = MX, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job_id,
        "type": "wait",
        "owner": owner,
        "status": STATUS_OF[event_type],
        "input": {"seconds": 1},
        "progress": {"percent": min(100.0, (sequence - 1) * 25.0), "message": f"step {sequence}"},
        "result": {"waited": 1} if event_type == "job.completed" else None,
        "error": "boom" if event_type == "job.failed" else None,
        "createdAt": "2026-11-22T10:00:00.000Z",
        "startedAt": None,
        "updatedAt": "2026-11-22T10:00:00.000Z",
        "completedAt": None,
        "attempt": 1,
        "worker": "test",
        "sequence": sequence,
    }
    data.update(extra)
    return data


def cloud_event(
    job_id: str, event_type: str, data: Any, event_id: str | None = None
) -> dict[str, Any]:
    """The CloudEvent the orchestrator's outbox publishes for one job change."""
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "job-orchestrator",
        "type": event_type,
        "subject": job_id,
        "datacontenttype": "application/json",
        "data": data,
    }


@dataclass
class Sidecar:
    app_id: str
    components: Path
    registry: Path
    app_port: int | None = None
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mx-logs-")))
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)  #: more of daprd's flags
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Sidecar:
        args = [
            PYTHON, "-m", "sidecar", "--app-id", self.app_id,
            "--dapr-http-port", str(self.http_port), "--dapr-grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
            "--resources-path", str(self.components),
        ]  # fmt: skip
        if self.app_port is not None:
            args += ["--app-port", str(self.app_port)]
        args += self.extra_args
        self.proc = ManagedProcess(
            f"sidecar-{self.app_id}",
            args,
            env={
                "DAPR_LOCAL_REGISTRY_DIR": str(self.registry),
                "PYTHONUNBUFFERED": "1",
                **self.extra_env,
            },
            log_dir=self.log_dir,
        ).start()
        wait_until_http(f"{self.url}/v1.0/healthz/outbound", timeout=30, process=self.proc)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Full health: the app answered and its subscriptions are delivering."""
        wait_until_http(f"{self.url}/v1.0/healthz", timeout=timeout, process=self.proc)

    def publish(self, event: dict[str, Any], topic: str = "job-events") -> None:
        status, _, body = http(
            "POST",
            f"{self.url}/v1.0/publish/pubsub/{topic}",
            event,
            content_type="application/cloudevents+json",
        )
        assert status == 204, (status, body)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@contextlib.contextmanager
def state_sidecar(
    app_id: str, base: Path, redis_host: str, db: int, extra_env: dict[str, str] | None = None
) -> Iterator[Sidecar]:
    """A running sidecar with the state store only (no subscriptions) on Redis database ``db``,
    its components, registry and logs under ``base``; stopped on exit."""
    components = write_components(base / "components", redis_host, db, subscriptions=False)
    started = Sidecar(
        app_id, components, base / "registry", log_dir=base, extra_env=extra_env or {}
    ).start()
    try:
        yield started
    finally:
        started.stop()


@dataclass
class App:
    """A service started the way `dapr run` starts it: `python -m <module>` with Dapr's env."""

    module: str
    sidecar: Sidecar
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> App:
        env = {
            "APP_ID": self.sidecar.app_id,
            "APP_PORT": str(self.port),
            "DAPR_HTTP_PORT": str(self.sidecar.http_port),
            "DAPR_GRPC_PORT": str(self.sidecar.grpc_port),
            "APP_PROTOCOL": "http",
            "APP_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.proc = ManagedProcess(
            f"app-{self.sidecar.app_id}", [PYTHON, "-m", self.module], env=env,
            log_dir=self.sidecar.log_dir,
        ).start()  # fmt: skip
        wait_until_http(f"{self.url}/healthz", timeout=30, process=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@contextlib.contextmanager
def running_pair(
    components: Path, base: Path, orchestrator_env: dict[str, str] | None = None
) -> Iterator[tuple[App, App]]:
    """The orchestrator and microservice-x, each with its sidecar on ``components`` (registry
    and logs under ``base``), as `dapr run -f` starts them; stopped on exit."""
    registry = base / "registry"
    orchestrator_port, mx_port = free_port(), free_port()
    orchestrator_sidecar = Sidecar(
        "job-orchestrator", components, registry, orchestrator_port, log_dir=base
    )
    mx_sidecar = Sidecar(MX, components, registry, mx_port, log_dir=base)
    orchestrator = App(
        "job_orchestrator",
        orchestrator_sidecar,
        orchestrator_port,
        extra_env=orchestrator_env or {},
    )
    mx = App("microservice_x", mx_sidecar, mx_port)
    processes = (orchestrator_sidecar, mx_sidecar, orchestrator, mx)
    try:
        for process in processes:
            process.start()
        orchestrator_sidecar.wait_ready()
        mx_sidecar.wait_ready()
        yield orchestrator, mx
    finally:
        for process in reversed(processes):
            process.stop()


def get_json(url: str) -> Any:
    status, _, body = http("GET", url)
    assert status == 200, (url, status, body)
    return body


def wait_for(predicate: Any, *, timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` returns a truthy value and return it; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")
