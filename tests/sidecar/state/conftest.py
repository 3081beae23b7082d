"""State stores on real backends, each wrapped in a StateService as the runtime does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar.components import Component
from sidecar.state.base import StateStore
from sidecar.state.registry import create_state_store
from sidecar.state_service import StateService
from tests.conftest import RedisServer
from tests.procs import PostgresCluster

APP_ID = "state-test-app"
KINDS = ("redis", "postgres", "sqlite", "memory")


@dataclass
class Harness:
    kind: str
    store: StateStore
    component: Component
    service: StateService
    name: str = "statestore"

    def key(self, label: str = "k") -> str:
        """A key no other test uses."""
        return f"{label}-{uuid.uuid4().hex[:12]}"


def component_for(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    extra: Mapping[str, str] | None = None,
    name: str = "statestore",
) -> Component:
    metadata: dict[str, str] = {}
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        metadata["redisHost"] = server.host
        type_ = "state.redis"
    elif kind == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres_server")
        metadata["connectionString"] = cluster.dsn
        type_ = "state.postgresql"
    elif kind == "sqlite":
        metadata["connectionString"] = str(tmp_path / "state.db")
        type_ = "state.sqlite"
    else:
        type_ = "state.in-memory"
    metadata.update(extra or {})
    return Component(name=name, type=type_, version="v1", metadata=metadata)


async def open_harness(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    extra: Mapping[str, str] | None = None,
    namespace: str = "",
) -> Harness:
    component = component_for(kind, request, tmp_path, extra)
    store = create_state_store(component, APP_ID)
    await store.init()
    service = StateService({component.name: (store, component)}, APP_ID, namespace)
    return Harness(kind, store, component, service)


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    opened = await open_harness(request.param, request, tmp_path)
    yield opened
    await opened.store.close()
