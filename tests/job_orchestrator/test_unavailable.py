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
    assert lonely.replica.sidecar is not None
    lonely.replica.sidecar.kill9()
    for method, path in [("POST", "/jobs"), ("GET", "/jobs/some-id"), ("GET", "/jobs")]:
        resp = lonely.client.request(method, path, json={"input": {"seconds": 0}})
        assert resp.status_code == 503, (path, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.headers["retry-after"] == "1"
        assert "Traceback" not in resp.text
    assert lonely.client.get("/healthz").status_code == 200
    assert value(scrape(lonely), failures) >= 3  # one call per request at least, all failed
