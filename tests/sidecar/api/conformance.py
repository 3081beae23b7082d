"""The conformance sidecar: every state store type, with each key prefix, and both pubsub types.

One ``python -m sidecar`` (app id ``conf-app``) serves the whole conformance suite, delivering to a
tiny app subscribed to each pubsub; tests reach it over HTTP and both SDK clients
(``transports.py``) and peek into the backends to see the keys the sidecar stored.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis

from tests.conftest import RedisServer
from tests.procs import PostgresCluster
from tests.sidecar.api.conftest import Sidecar, TinyApp, component

APP_ID = "conf-app"
#: store name -> component type; pgstore only runs where PostgreSQL is installed.
STORES = {
    "redisstore": "state.redis",
    "sqlitestore": "state.sqlite",
    "pgstore": "state.postgresql",
    "memstore": "state.in-memory",
}
PUBSUBS = ("redispubsub", "mempubsub")
#: keyPrefix strategy -> the stored form of user key ``k`` in a store named ``s``.
PREFIXES = {
    "appid": lambda store, key: f"{APP_ID}||{key}",
    "name": lambda store, key: f"{store}||{key}",
    "none": lambda store, key: key,
    "Team": lambda store, key: f"team||{key}",  # a custom prefix is lower-cased, as daprd does
}
BACKENDS = ("redis", "sqlite", "pg")  #: the stores whose stored keys a test can look at


def prefix_store(backend: str, strategy: str) -> str:
    """The store of that backend with that keyPrefix (appid is the default stores')."""
    default = {"redis": "redisstore", "sqlite": "sqlitestore", "pg": "pgstore"}[backend]
    return default if strategy == "appid" else f"{backend}-{strategy.lower()}"


@dataclass
class Conformance:
    sidecar: Sidecar
    app: TinyApp
    redis: RedisServer
    sqlite_file: Path
    postgres: PostgresCluster | None
    doomed_redis: RedisServer  #: the broker of ``doomedpubsub``, killed to make publishes fail

    def has(self, store: str) -> bool:
        return self.postgres is not None or not store.startswith("pg")

    async def stored_keys(self, backend: str, key: str) -> set[str]:
        """Every key in that backend's table (or keyspace) that ends with ``key``."""
        if backend == "redis":
            client = redis.Redis(host="127.0.0.1", port=self.redis.port, decode_responses=True)
            with client:
                return {str(k) for k in client.keys(f"*{key}")}
        if backend == "sqlite":
            with sqlite3.connect(self.sqlite_file) as db:
                rows = db.execute("SELECT key FROM state WHERE key LIKE ?", (f"%{key}",))
                return {row[0] for row in rows}
        assert self.postgres is not None
        url = f"postgresql://postgres@127.0.0.1:{self.postgres.port}/postgres"
        connection: Any = await asyncpg.connect(url)
        try:
            rows = await connection.fetch("SELECT key FROM state WHERE key LIKE $1", f"%{key}")
        finally:
            await connection.close()
        return {row["key"] for row in rows}


def write_resources(
    folder: Path,
    redis_server: RedisServer,
    sqlite_file: Path,
    postgres: PostgresCluster | None,
    doomed_redis: RedisServer,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    backend_meta = {
        "redis": ("state.redis", {"redisHost": redis_server.host}),
        "sqlite": ("state.sqlite", {"connectionString": str(sqlite_file)}),
    }
    if postgres is not None:
        backend_meta["pg"] = ("state.postgresql", {"connectionString": postgres.dsn})
    docs = [component("memstore", "state.in-memory")]
    for backend, (type_, meta) in backend_meta.items():
        docs.append(component(prefix_store(backend, "appid"), type_, meta))
        for strategy in ("name", "none", "Team"):
            docs.append(
                component(prefix_store(backend, strategy), type_, {**meta, "keyPrefix": strategy})
            )
    docs.append(
        component(
            "redispubsub",
            "pubsub.redis",
            {"redisHost": redis_server.host, "processingTimeout": "2s"},
        )
    )
    # No app may publish to a protected topic unless its publishingScopes name it.
    docs.append(component("mempubsub", "pubsub.in-memory", {"protectedTopics": "conf-protected"}))
    docs.append(component("doomedpubsub", "pubsub.redis", {"redisHost": doomed_redis.host}))
    (folder / "components.yaml").write_text("\n---\n".join(docs))


def subscriptions() -> list[dict[str, Any]]:
    subs: list[dict[str, Any]] = []
    for pubsub in PUBSUBS:
        subs.append({"pubsubname": pubsub, "topic": "conf", "route": f"/events/{pubsub}"})
        subs.append(
            {
                "pubsubname": pubsub,
                "topic": "conf-raw",
                "route": f"/events/raw-{pubsub}",
                "metadata": {"rawPayload": "true"},
            }
        )
    return subs
