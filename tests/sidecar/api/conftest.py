"""Real sidecar processes (``python -m sidecar``) and a tiny real app for the API suite."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import RedisServer
from tests.procs import PYTHON, ManagedProcess, free_port, wait_until_http

if TYPE_CHECKING:
    from dapr.clients import DaprClient

    from tests.sidecar.api.conformance import Conformance
    from tests.sidecar.api.transports import Api

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
    """State stores (redis with outbox, sqlite, in-memory) and a Redis Streams pubsub.

    ``redisstore`` shares the pubsub's Redis, so its outbox takes the direct path (the event is
    appended by the write's own script); ``relaystore`` is in another database of that Redis, so
    its outbox goes daprd's way (internal topic, marker, relay).
    """
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
        component(
            "relaystore",
            "state.redis",
            {
                "redisHost": redis.host,
                "redisDB": "1",
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
        flags: tuple[str, ...] = (),
    ) -> None:
        self.app_id = app_id
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.metrics_port = free_port()
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
            "--metrics-port",
            str(self.metrics_port),
            "--resources-path",
            str(resources),
        ]
        if app_port is not None:
            args += ["--app-port", str(app_port)]
        args += flags
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
    """``tiny_app.py``; ``answer`` replaces the JSON of ``subscriptions`` as the raw answer to
    ``GET /dapr/subscribe``, and ``garbled`` of those requests (or ``"all"``) get a reply that
    is not HTTP."""

    def __init__(
        self,
        subscriptions: list[dict[str, Any]] | None,
        log_dir: Path,
        *,
        answer: str | None = None,
        garbled: int | str = 0,
    ) -> None:
        self.port = free_port()
        env = {"APP_PORT": str(self.port), "SUBSCRIBE_GARBLED": str(garbled)}
        if answer is not None:
            env["SUBSCRIPTIONS"] = answer
        elif subscriptions is not None:
            env["SUBSCRIPTIONS"] = json.dumps(subscriptions)
        self.proc = ManagedProcess("tiny-app", [PYTHON, str(TINY_APP)], env=env, log_dir=log_dir)

    def start(self) -> TinyApp:
        self.proc.start()
        wait_until_http(f"http://127.0.0.1:{self.port}/received", process=self.proc)
        return self

    def received(self) -> list[dict[str, Any]]:
        return self._get("/received")

    def subscribe_calls(self) -> list[dict[str, str]]:
        """The headers of each ``GET /dapr/subscribe`` the app received."""
        return self._get("/subscribe-calls")

    def _get(self, path: str) -> Any:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())


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


def upsert_in_transaction(car: Sidecar, store: str, key: str) -> httpx.Response:
    """One upsert of ``key`` (its name as value) in an HTTP state transaction."""
    return httpx.post(
        f"{car.http}/v1.0/state/{store}/transaction",
        json={"operations": [{"operation": "upsert", "request": {"key": key, "value": key}}]},
        timeout=30,
    )


# --- The conformance sidecar (tests/sidecar/api/conformance.py), shared by the session -------


@pytest.fixture(scope="session")
def conformance(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Conformance]:
    # Imported here: conformance.py builds on this module's Sidecar and TinyApp.
    from tests.procs import postgres_bin_dir
    from tests.sidecar.api import conformance as conf

    folder = tmp_path_factory.mktemp("conformance")
    wanted = postgres_bin_dir() is not None or os.environ.get("REQUIRE_POSTGRES") == "1"
    postgres = request.getfixturevalue("postgres_server") if wanted else None
    sqlite_file = folder / "state.db"
    # Its own Redis: this sidecar lives for the session, and tests count the shared one's clients.
    redis_server = RedisServer(free_port(), folder / "redis")
    doomed = RedisServer(free_port(), folder / "doomed-redis")
    conf.write_resources(folder / "resources", redis_server, sqlite_file, postgres, doomed)
    registry = folder / "registry"
    registry.mkdir()
    app = TinyApp(conf.subscriptions(), folder).start()
    car = Sidecar(conf.APP_ID, folder / "resources", registry, app_port=app.port, log_dir=folder)
    try:
        car.start()
        yield conf.Conformance(car, app, redis_server, sqlite_file, postgres, doomed)
    finally:
        car.stop()
        app.proc.stop()
        doomed.stop()
        redis_server.stop()


@pytest.fixture(scope="module")
def conformance_sync_client(conformance: Conformance) -> Iterator[DaprClient]:
    """The sync SDK client, with the SDK's settings on the conformance sidecar for the module."""
    from dapr.clients import DaprClient
    from dapr.conf import settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings, "DAPR_HTTP_PORT", conformance.sidecar.http_port)
        patch.setattr(settings, "DAPR_API_TOKEN", None)
        patch.setattr(settings, "DAPR_HTTP_ENDPOINT", None)
        with DaprClient(address=conformance.sidecar.grpc_address) as client:
            yield client


@asynccontextmanager
async def open_api(
    transport: str, conformance: Conformance, sync_client: DaprClient
) -> AsyncIterator[Api]:
    """An ``Api`` (tests/sidecar/api/transports.py) of that transport on the conformance sidecar."""
    from dapr.aio.clients import DaprClient as AioDaprClient

    from tests.sidecar.api import sdk_transports, transports

    car: Sidecar = conformance.sidecar
    if transport == "http":
        async with httpx.AsyncClient(base_url=car.http, timeout=10) as http:
            yield transports.HttpApi(http)
    elif transport == "sync":
        yield sdk_transports.SyncSdkApi(sync_client)
    else:
        async with AioDaprClient(address=car.grpc_address) as client:
            yield sdk_transports.AioSdkApi(client)


@pytest.fixture(params=["http", "sync", "aio"])
async def api(
    request: pytest.FixtureRequest, conformance: Conformance, conformance_sync_client: DaprClient
) -> AsyncIterator[Api]:
    """The conformance sidecar through raw HTTP, the sync SDK client and the aio SDK client."""
    async with open_api(request.param, conformance, conformance_sync_client) as opened:
        yield opened


@pytest.fixture()
async def apis(
    conformance: Conformance, conformance_sync_client: DaprClient
) -> AsyncIterator[list[Api]]:
    """All three transports at once, for points that wait (TTL) and are checked together."""
    async with (
        open_api("http", conformance, conformance_sync_client) as http,
        open_api("sync", conformance, conformance_sync_client) as sync,
        open_api("aio", conformance, conformance_sync_client) as aio,
    ):
        yield [http, sync, aio]
