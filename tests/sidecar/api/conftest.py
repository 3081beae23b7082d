"""Real sidecar processes (``python -m sidecar``) and a tiny real app for the API suite."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.procs import PYTHON, ManagedProcess, free_port, wait_until_http

HERE = Path(__file__).resolve().parent
TINY_APP = HERE / "tiny_app.py"


def component(name: str, type_: str, metadata: Mapping[str, str] | None = None) -> str:
    items = "".join(
        f"    - name: {k}\n      value: {json.dumps(v)}\n" for k, v in (metadata or {}).items()
    )
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
        f"metadata:\n  name: {name}\nspec:\n  type: {type_}\n  version: v1\n"
        + (f"  metadata:\n{items}" if items else "")
    )


def standard_resources(folder: Path, redis: RedisServer, sqlite_file: Path) -> Path:
    """Three state stores (redis with outbox, sqlite, in-memory) and a Redis Streams pubsub."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = [
        component(
            "redisstore",
            "state.redis",
            {
                "redisHost": redis.host,
                "outboxPublishPubsub": "pubsub",
                "outboxPublishTopic": "outbox-events",
            },
        ),
        component("sqlitestore", "state.sqlite", {"connectionString": str(sqlite_file)}),
        component("memstore", "state.in-memory"),
        component(
            "pubsub",
            "pubsub.redis",
            {"redisHost": redis.host, "processingTimeout": "2s", "redisDB": "0"},
        ),
    ]
    (folder / "components.yaml").write_text("\n---\n".join(docs))
    return folder


class Sidecar:
    """One ``python -m sidecar`` process on free ports."""

    def __init__(
        self,
        app_id: str,
        resources: Path,
        registry: Path,
        *,
        app_port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.app_id = app_id
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.app_port = app_port
        args = [
            PYTHON,
            "-m",
            "sidecar",
            "--app-id",
            app_id,
            "--dapr-http-port",
            str(self.http_port),
            "--dapr-grpc-port",
            str(self.grpc_port),
            "--resources-path",
            str(resources),
        ]
        if app_port is not None:
            args += ["--app-port", str(app_port)]
        self.proc = ManagedProcess(
            f"sidecar-{app_id}",
            args,
            env={"DAPR_LOCAL_REGISTRY_DIR": str(registry), **(env or {})},
            log_dir=log_dir,
        )

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, *, wait: str = "/v1.0/healthz") -> Sidecar:
        self.proc.start()
        wait_until_http(self.http + wait, process=self.proc, timeout=30)
        return self

    def stop(self) -> None:
        self.proc.stop()


class TinyApp:
    def __init__(self, subscriptions: list[dict[str, Any]] | None, log_dir: Path) -> None:
        self.port = free_port()
        env = {"APP_PORT": str(self.port)}
        if subscriptions is not None:
            env["SUBSCRIPTIONS"] = json.dumps(subscriptions)
        self.proc = ManagedProcess("tiny-app", [PYTHON, str(TINY_APP)], env=env, log_dir=log_dir)

    def start(self) -> TinyApp:
        self.proc.start()
        wait_until_http(f"http://127.0.0.1:{self.port}/received", process=self.proc)
        return self

    def received(self) -> list[dict[str, Any]]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/received", timeout=5) as r:
            result: list[dict[str, Any]] = json.loads(r.read())
            return result


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sidecar-api-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def registry(workdir: Path) -> Path:
    path = workdir / "registry"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def resources(workdir: Path, redis_server: RedisServer) -> Path:
    return standard_resources(workdir / "resources", redis_server, workdir / "state.db")


@pytest.fixture(scope="module")
def app(workdir: Path) -> Iterator[TinyApp]:
    subscriptions = [
        {"pubsubname": "pubsub", "topic": "api-orders", "route": "/events/orders"},
        {"pubsubname": "pubsub", "topic": "orders/eu/new", "route": "/events/nested"},
        {
            "pubsubname": "pubsub",
            "topic": "outbox-events",
            "routes": {
                "rules": [{"match": 'event.type == "job.created"', "path": "/events/created"}],
                "default": "/events/outbox",
            },
        },
    ]
    tiny = TinyApp(subscriptions, workdir).start()
    yield tiny
    tiny.proc.stop()


@pytest.fixture(scope="module")
def sidecar(resources: Path, registry: Path, app: TinyApp, workdir: Path) -> Iterator[Sidecar]:
    """The suite's main sidecar, app id ``api-app``, delivering to the tiny app."""
    car = Sidecar("api-app", resources, registry, app_port=app.port, log_dir=workdir)
    car.start()
    yield car
    car.stop()


@pytest.fixture()
def sdk_http_port(sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> int:
    """Point the SDK's HTTP side (health wait, invocation) at the sidecar; it reads settings."""
    from dapr.conf import settings

    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", sidecar.http_port)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
    monkeypatch.setattr(settings, "DAPR_HTTP_ENDPOINT", None)
    return sidecar.http_port


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"
