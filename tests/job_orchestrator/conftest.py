"""One real sidecar (on the session Redis) and the orchestrator app, shared by the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess, serve_inprocess


@pytest.fixture(scope="package")
def inproc(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcess]:
    with serve_inprocess(redis_server.host, tmp_path_factory.mktemp("inproc")) as served:
        yield served
