"""Sidecar gone: every API call answers 503 problem+json with Retry-After, never a bare 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess, serve_inprocess
from tests.job_orchestrator.test_metrics import scrape, value


@pytest.fixture(scope="module")
def lonely(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcess]:
    with serve_inprocess(redis_server.host, tmp_path_factory.mktemp("lonely")) as served:
        yield served


def test_sidecar_killed_gives_503_with_retry_after(lonely: InProcess) -> None:
    assert lonely.client.post("/jobs", json={"input": {"seconds": 0}}).status_code == 202
    failures = "job_orchestrator_sidecar_call_failures_total"
    assert value(scrape(lonely), failures) == 0
    ready = lonely.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready", "role": "both", "replica": lonely.settings.replica_name,
    }  # fmt: skip
    assert lonely.replica.sidecar is not None
    lonely.replica.sidecar.kill9()
    for method, path in [("POST", "/jobs"), ("GET", "/jobs/some-id"), ("GET", "/jobs")]:
        resp = lonely.client.request(method, path, json={"input": {"seconds": 0}})
        assert resp.status_code == 503, (path, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.headers["retry-after"] == "1"
        assert "Traceback" not in resp.text
    assert lonely.client.get("/healthz").status_code == 200  # liveness: the app still answers
    # Readiness follows the sidecar, so a load balancer stops sending requests here.
    unready = lonely.client.get("/readyz")
    assert unready.status_code == 503, unready.text
    assert unready.headers["content-type"] == "application/problem+json"
    assert unready.headers["retry-after"] == "1"
    assert unready.json()["title"] == "Replica not ready"
    assert f"127.0.0.1:{lonely.replica.http_port}" in unready.json()["detail"]
    assert value(scrape(lonely), failures) >= 3  # one call per request at least, all failed
