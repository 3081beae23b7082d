"""One real sidecar (on the session Redis) and the orchestrator app, shared by the package."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from job_orchestrator.sidecar_client import connect
from job_orchestrator.store import JobStore
from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess, serve_inprocess


@pytest.fixture(scope="package")
def inproc(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcess]:
    with serve_inprocess(redis_server.host, tmp_path_factory.mktemp("inproc")) as served:
        yield served


@pytest.fixture
async def store(inproc: InProcess) -> AsyncIterator[JobStore]:
    """A JobStore of a replica of its own (a fresh name), on the in-process replica's sidecar."""
    settings = dataclasses.replace(inproc.settings, replica_name=f"store-{uuid.uuid4().hex[:6]}")
    opened = JobStore(await connect(settings), settings)
    await opened.inspect()
    try:
        yield opened
    finally:
        await opened.close()
