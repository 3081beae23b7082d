"""Real Dapr-side processes for orchestrator tests: components on the test Redis, sidecars, apps."""

from __future__ import annotations

import json
import math
import os
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from sidecar.durations import parse_go_duration
from tests.procs import PYTHON, ManagedProcess, free_port, wait_until_http

ROOT = Path(__file__).resolve().parents[2]


def write_components(
    directory: Path,
    redis_host: str,
    topic: str,
    *,
    lease: str = "30s",
    redeliver: str = "5s",
    concurrency: int = 32,
    state: tuple[str, list[dict[str, Any]]] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Path:
    """The orchestrator's four components, on ``redis_host``, publishing to ``topic``.

    ``state`` swaps the state store: (type, metadata) of another backend. ``secrets`` adds a
    ``secretstores.local.file`` store holding them, named by the state store's auth.secretStore,
    so the state metadata may use secretKeyRef.
    """
    directory.mkdir(parents=True, exist_ok=True)
    redis = [{"name": "redisHost", "value": redis_host}, {"name": "redisPassword", "value": ""}]
    docs: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "statestore": (
            "state.redis",
            [
                {"name": "outboxPublishPubsub", "value": "pubsub"},
                {"name": "outboxPublishTopic", "value": topic},
            ],
        ),
        "pubsub": ("pubsub.redis", []),
        "jobqueue": (
            "pubsub.redis",
            [
                {"name": "processingTimeout", "value": lease},
                {"name": "redeliverInterval", "value": redeliver},
                {"name": "concurrency", "value": str(concurrency)},
                {"name": "queueDepth", "value": "4"},
            ],
        ),
        "jobbroadcast": ("pubsub.redis", [{"name": "consumerID", "value": "{uuid}"}]),
    }
    if state is not None:
        outbox = docs["statestore"][1]
        docs["statestore"] = (state[0], state[1] + outbox)
    if secrets is not None:
        secrets_file = directory.parent / "secrets.json"
        secrets_file.write_text(json.dumps(dict(secrets)))
        docs["localsecrets"] = (
            "secretstores.local.file",
            [{"name": "secretsFile", "value": str(secrets_file)}],
        )
    write_resiliency(directory, parse_go_duration(lease))
    for name, (kind, extra) in docs.items():
        own = name == "localsecrets" or (name == "statestore" and state is not None)
        doc: dict[str, Any] = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": name},
            "spec": {"type": kind, "version": "v1", "metadata": extra if own else redis + extra},
        }
        if name == "statestore" and secrets is not None:
            doc["auth"] = {"secretStore": "localsecrets"}
        # JSON is YAML; no YAML writer needed.
        (directory / f"{name}.yaml").write_text(json.dumps(doc, indent=2))
    return directory


class Replica:
    """One orchestrator replica's ports (app, sidecar HTTP and gRPC)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.app_port = free_port()
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.sidecar: ManagedProcess | None = None
        self.app: ManagedProcess | None = None
        #: How the sidecar and the app were last started, for start_again().
        self._sidecar_args: tuple[Path, Path] | None = None
        self._app_args: tuple[str, Path, dict[str, str]] | None = None
        self.metrics_port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def env(self, topic: str, **extra: str) -> dict[str, str]:
        return {
            "APP_ID": "job-orchestrator",
            "APP_PORT": str(self.app_port),
            "APP_HOST": "127.0.0.1",
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "JOB_EVENTS_TOPIC": topic,
            "REPLICA_NAME": f"{self.name}-{uuid.uuid4().hex[:6]}",
            **extra,
        }

    def start_sidecar(self, resources: Path, log_dir: Path) -> ManagedProcess:
        self._sidecar_args = (resources, log_dir)
        self.sidecar = ManagedProcess(
            f"sidecar-{self.name}",
            [
                PYTHON,
                "-m",
                "sidecar",
                "--app-id",
                "job-orchestrator",
                "--app-port",
                str(self.app_port),
                "--dapr-http-port",
                str(self.http_port),
                "--dapr-grpc-port",
                str(self.grpc_port),
                "--metrics-port",
                str(self.metrics_port),
                "--resources-path",
                str(resources),
            ],
            log_dir=log_dir,
        ).start()
        wait_until_http(
            f"http://127.0.0.1:{self.http_port}/v1.0/healthz/outbound", process=self.sidecar
        )
        return self.sidecar

    def start_app(self, topic: str, log_dir: Path, **env: str) -> ManagedProcess:
        self._app_args = (topic, log_dir, env)
        self.app = ManagedProcess(
            f"orchestrator-{self.name}",
            [PYTHON, "-m", "job_orchestrator"],
            env={**self.env(topic, **env), "PYTHONUNBUFFERED": "1"},
            log_dir=log_dir,
        ).start()
        wait_until_http(f"{self.url}/healthz", process=self.app, timeout=60)
        assert self.sidecar is not None
        wait_until_http(f"http://127.0.0.1:{self.http_port}/v1.0/healthz", process=self.sidecar)
        return self.app

    def stop(self) -> None:
        for proc in (self.app, self.sidecar):
            if proc is not None:
                proc.stop()

    def start_again(self) -> None:
        """Start the sidecar and the app again after stop(), as they were started before."""
        assert self._sidecar_args is not None and self._app_args is not None
        self.start_sidecar(*self._sidecar_args)
        topic, log_dir, env = self._app_args
        self.start_app(topic, log_dir, **env)


def write_resiliency(directory: Path, lease_seconds: float) -> None:
    """The project's resiliency files with the queue retries scaled to a test's shorter lease
    (the retries must outlast jobqueue's processingTimeout, as the project's do)."""
    step = min(5.0, max(0.2, lease_seconds / 4))
    for source in sorted((ROOT / "components").glob("resiliency*.yaml")):
        doc = yaml.safe_load(source.read_text())  # daprd reads one document per file
        if doc["metadata"]["name"] == "job-orchestrator":
            for policy in doc["spec"]["policies"]["retries"].values():
                policy.update(duration=f"{step}s", maxRetries=math.ceil(lease_seconds / step) + 3)
        (directory / source.name).write_text(yaml.safe_dump(doc, sort_keys=False))


def sidecar_state(http_port: int, key: str) -> Any:
    """Read a state key straight from the sidecar's HTTP API (None when missing)."""
    url = f"http://127.0.0.1:{http_port}/v1.0/state/statestore/{key}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def log_dir_for(tmp: Path) -> Path:
    path = tmp / "logs"
    os.makedirs(path, exist_ok=True)
    return path


@contextmanager
def replicas(
    redis_host: str, tmp: Path, *specs: tuple[str, dict[str, str]]
) -> Iterator[list[Replica]]:
    """Orchestrator replicas (name, app environment), each with its sidecar, on a topic of
    their own; every sidecar starts before any app. Stopped on exit."""
    topic = f"job-events-{uuid.uuid4().hex[:8]}"
    resources = write_components(tmp / "resources", redis_host, topic)
    logs = log_dir_for(tmp)
    started = [Replica(name) for name, _ in specs]
    try:
        for replica in started:
            replica.start_sidecar(resources, logs)
        for replica, (_, env) in zip(started, specs, strict=True):
            replica.start_app(topic, logs, **env)
        yield started
    finally:
        for replica in started:
            replica.stop()


@contextmanager
def one_replica(redis_host: str, tmp: Path, name: str, **env: str) -> Iterator[Replica]:
    """One orchestrator replica (sidecar and app) on a topic of its own; stopped on exit."""
    with replicas(redis_host, tmp, (name, env)) as (replica,):
        yield replica
