"""API and worker replicas scale apart: an APP_ENV=api replica takes the request, an
APP_ENV=worker replica runs the job, and the waiting request is answered across them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, replicas

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_and_worker(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    tmp = tmp_path_factory.mktemp("orchestrator-roles")
    roles = [("api", {"APP_ENV": "api"}), ("worker", {"APP_ENV": "worker"})]
    with replicas(redis_server.host, tmp, *roles) as (api, worker):
        yield api, worker


def test_api_replica_answers_with_the_worker_replicas_result(
    api_and_worker: tuple[Replica, Replica],
) -> None:
    api, worker = api_and_worker
    assert worker.app is not None
    with httpx.Client(base_url=api.url, timeout=30) as client:
        resp = client.post(
            "/Jobs/StartJobWithTimeout", json={"input": {"seconds": 0.5}, "timeoutSeconds": 10}
        )
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "Completed"
    assert job["worker"] == worker.app.env["REPLICA_NAME"]
    assert job["durationSeconds"] >= 0.5
    with httpx.Client(base_url=worker.url, timeout=30) as client:
        assert client.get(f"/jobs/{job['id']}").status_code == 503  # no job API on workers
