"""API and worker replicas scale apart: an APP_ENV=api replica takes the request, an
APP_ENV=worker replica runs the job, and the waiting request is answered across them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, replicas

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_and_worker(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    tmp = tmp_path_factory.mktemp("orchestrator-roles")
    own_types = {"JOB_HANDLERS": "tests.job_orchestrator.sample_jobs:jobs"}
    # The API replica runs without requeue: its ledger's saves and directory reads come on
    # timers and would blur the call count of the event-stream test.
    roles = [
        ("api", {"APP_ENV": "api", "JOB_REQUEUE_AFTER_SECONDS": "0", **own_types}),
        ("worker", {"APP_ENV": "worker", **own_types}),
    ]
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


def test_an_answer_from_another_replicas_event_keeps_big_integers_exact(
    api_and_worker: tuple[Replica, Replica],
) -> None:
    """The worker's final event carries the job as daprd's outbox relays it, every number a
    float64: 2**53 + 1 arrives as 2**53. The API replica answers with the stored job."""
    api, _ = api_and_worker
    payload = {"ids": [2**53 + 1, -(2**63) - 3], "small": 7, "price": 10.5}
    with httpx.Client(base_url=api.url, timeout=30) as client:
        resp = client.post(
            "/Jobs/StartJobWithTimeout",
            json={"type": "echo", "input": payload, "timeoutSeconds": 20},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["result"] == payload
        assert resp.json()["input"] == payload
        stored = client.get(f"/jobs/{resp.json()['id']}").json()
    assert stored["result"] == payload


def _sidecar_calls(client: httpx.Client) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "job_orchestrator_sidecar_calls":
            return float(family.samples[0].value)
    raise AssertionError("no job_orchestrator_sidecar_calls metric")


def _stream_types(url: str, job_id: str) -> list[tuple[str, int]]:
    """(event type, sequence) of one Server-Sent Events stream, read until the server ends it."""
    seen: list[tuple[str, int]] = []
    with (
        httpx.Client(base_url=url, timeout=30) as client,
        client.stream("GET", f"/jobs/{job_id}/events") as resp,
    ):
        assert resp.status_code == 200
        kind = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                seen.append((kind, json.loads(line[6:])["sequence"]))
    return seen


def test_event_streams_of_a_job_run_elsewhere_share_one_reread(
    api_and_worker: tuple[Replica, Replica],
) -> None:
    """Progress is not broadcast, so the API replica re-reads a job that runs elsewhere while
    streams of it are open: once per refresh interval for all of them, not once per stream."""
    api, _ = api_and_worker
    streams = 6
    with httpx.Client(base_url=api.url, timeout=30) as client:
        job = client.post("/jobs", json={"input": {"seconds": 4}}).json()
        before = _sidecar_calls(client)
        with ThreadPoolExecutor(streams) as pool:
            seen = list(pool.map(lambda _: _stream_types(api.url, job["id"]), range(streams)))
        calls = _sidecar_calls(client) - before
    for events in seen:
        assert events[-1][0] == "job.completed"
        assert [s for _, s in events] == sorted({s for _, s in events})
        # Progress made on the worker replica reached every stream through the shared re-reads.
        assert sum(kind == "job.updated" for kind, _ in events) >= 2, events
    # About 4 s of one re-read a second, plus the streams' first reads and the index's flushes;
    # one re-read per stream and second would be 24 or more.
    assert calls <= 16, calls
