"""microservice-x with the real orchestrator: jobs started through Dapr service invocation, and
their outbox events coming back through the subscription. Real Redis, both sidecars, both apps
started as `python -m job_orchestrator` / `python -m microservice_x`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.microservice_x.stack import (
    MX,
    App,
    Sidecar,
    get_json,
    http,
    running_pair,
    wait_for,
    write_components,
)

#: This module's own Redis database (see write_components).
REDIS_DB = 12

pytestmark = pytest.mark.e2e


@dataclass
class Pair:
    orchestrator: App
    mx: App

    def view(self, job_id: str) -> dict[str, Any] | None:
        status, _, body = http("GET", f"{self.mx.url}/jobs/{job_id}")
        if status == 404:
            return None
        assert status == 200, (status, body)
        result: dict[str, Any] = body
        return result

    def wait_view(self, job_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            view = self.view(job_id)
            return view if view and view["status"] == status else None

        found: dict[str, Any] = wait_for(reached, timeout=timeout, what=f"{job_id} {status}")
        return found

    def start_on_orchestrator(self, body: dict[str, Any]) -> str:
        status, _, job = http("POST", f"{self.orchestrator.url}/jobs", body)
        assert status == 202, (status, job)
        job_id: str = job["id"]
        return job_id

    def final_on_orchestrator(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = get_json(f"{self.orchestrator.url}/jobs/{job_id}?wait=10")
        assert job["status"] in ("Completed", "Failed", "Canceled"), job
        return job


@pytest.fixture(scope="module")
def pair(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("mx-orchestrator")
    components = write_components(base / "components", redis_server.host, REDIS_DB)
    with running_pair(components, base) as (orchestrator, mx):
        yield Pair(orchestrator, mx)


def test_a_job_started_here_runs_there_and_its_events_come_back(pair: Pair) -> None:
    status, headers, started = http(
        "POST", f"{pair.mx.url}/jobs", {"type": "wait", "input": {"seconds": 1.2}}
    )
    assert status == 202, started
    job_id = started["id"]
    assert headers["location"] == f"/jobs/{job_id}"
    assert started["job"]["owner"] == MX
    view = pair.wait_view(job_id, "Completed")
    final = pair.final_on_orchestrator(job_id)
    assert view["result"] == final["result"]
    assert view["sequence"] == final["sequence"]
    types = [e["type"] for e in view["events"]]
    assert types[0] == "job.created"
    assert types[-1] == "job.completed"
    assert "job.updated" in types
    sequences = [e["sequence"] for e in view["events"]]
    assert sequences == list(range(1, final["sequence"] + 1))
    assert job_id in [j["id"] for j in get_json(f"{pair.mx.url}/jobs?limit=500")]
    # Both services count it: started here, created and made final there.
    assert 'microservice_x_jobs_started_total{type="wait"}' in _metrics(pair.mx.url)
    orchestrator = _metrics(pair.orchestrator.url)
    assert 'job_orchestrator_jobs_finished_total{status="Completed",type="wait"}' in orchestrator


def test_the_trace_of_a_request_to_microservice_x_reaches_the_jobs_events(
    pair: Pair, redis_server: RedisServer
) -> None:
    """microservice-x hands the caller's traceparent on through invocation; the orchestrator
    keeps it with the job, and every event of the job carries it."""
    trace = "00-" + uuid.uuid4().hex + "-00f067aa0ba902b7-01"
    status, _, started = http(
        "POST",
        f"{pair.mx.url}/jobs",
        {"type": "wait", "input": {"seconds": 0}},
        headers={"traceparent": trace},
    )
    assert status == 202, started
    pair.wait_view(started["id"], "Completed")
    conn = redis.Redis(port=redis_server.port, db=REDIS_DB)
    try:
        entries = conn.xrange("job-events")
    finally:
        conn.close()
    events = [json.loads(fields[b"data"]) for _, fields in entries]
    mine = [e for e in events if e.get("subject") == started["id"]]
    assert [e["type"] for e in mine][-1] == "job.completed"
    assert {e["traceparent"] for e in mine} == {trace}


def _metrics(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def test_a_failing_job_started_on_the_orchestrator_ends_failed_here(pair: Pair) -> None:
    job_id = pair.start_on_orchestrator(
        {"type": "wait", "input": {"seconds": 0.2, "fail": True}, "owner": MX}
    )
    view = pair.wait_view(job_id, "Failed")
    assert view["error"] == pair.final_on_orchestrator(job_id)["error"]
    assert view["error"]
    assert [e["type"] for e in view["events"]][-1] == "job.failed"


def test_a_canceled_job_ends_canceled_here(pair: Pair) -> None:
    status, _, started = http(
        "POST", f"{pair.mx.url}/jobs", {"type": "wait", "input": {"seconds": 30}}
    )
    assert status == 202, started
    job_id = started["id"]
    pair.wait_view(job_id, "InProgress")
    status, _, body = http("POST", f"{pair.orchestrator.url}/jobs/{job_id}/cancel")
    assert status in (200, 202), body
    view = pair.wait_view(job_id, "Canceled")
    assert [e["type"] for e in view["events"]][-1] == "job.canceled"


def test_jobs_of_other_owners_or_none_are_absent(pair: Pair) -> None:
    others = [
        pair.start_on_orchestrator({"type": "wait", "input": {"seconds": 0.1}, "owner": "portal"}),
        pair.start_on_orchestrator({"type": "wait", "input": {"seconds": 0.1}}),
    ]
    for job_id in others:
        pair.final_on_orchestrator(job_id)
    # A job of ours started after them, through the same stream, marks how far delivery got.
    marker = pair.start_on_orchestrator({"type": "wait", "input": {"seconds": 0.1}, "owner": MX})
    pair.wait_view(marker, "Completed")
    listed = [j["id"] for j in get_json(f"{pair.mx.url}/jobs?limit=500")]
    letters = [d["subject"] for d in get_json(f"{pair.mx.url}/dead-letters?limit=500")]
    for job_id in others:
        assert pair.view(job_id) is None
        assert job_id not in listed
        assert job_id not in letters


def test_an_unknown_job_type_is_refused_by_the_orchestrator_as_a_problem(pair: Pair) -> None:
    status, headers, problem = http("POST", f"{pair.mx.url}/jobs", {"type": f"nope-{uuid.uuid4()}"})
    assert status == 422, problem
    assert headers["content-type"] == "application/problem+json"
    assert "wait" in problem["detail"]


def test_input_numbers_past_64_bits_reach_the_orchestrator(pair: Pair) -> None:
    """Found by the fuzzer: orjson refuses such integers, JSON and the orchestrator do not."""
    big = -(2**100)
    status, _, problem = http(
        "POST", f"{pair.mx.url}/jobs", {"type": f"nope-{uuid.uuid4()}", "input": {"n": big}}
    )
    # Sent on as it came: the orchestrator's own answer (an unknown type), not a 500 here.
    assert status == 422, problem
    assert "wait" in problem["detail"]


def test_only_the_orchestrator_publishes_job_events(
    pair: Pair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """components/pubsub.yaml protects the job topics: an event forged by any other app is
    refused by its own sidecar, so it reaches neither a waiting request nor microservice-x (the
    orchestrator's events flow, as the tests above show)."""
    base = tmp_path_factory.mktemp("intruder")
    intruder = Sidecar(
        "intruder", pair.mx.sidecar.components, pair.mx.sidecar.registry, log_dir=base
    ).start()
    try:
        forged = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "job-orchestrator",
            "type": "job.completed",
            "datacontenttype": "application/json",
            "data": {"id": "forged", "owner": MX, "status": "Completed"},
        }
        attempts = [
            (intruder, "job-events"),
            (intruder, "job-events-deadletter"),
            (pair.mx.sidecar, "job-events"),
        ]
        for sidecar, topic in attempts:
            status, _, body = http(
                "POST",
                f"{sidecar.url}/v1.0/publish/pubsub/{topic}",
                forged,
                content_type="application/cloudevents+json",
            )
            assert status == 403, (sidecar.app_id, topic, body)
            assert body["errorCode"] == "ERR_PUBSUB_FORBIDDEN", body
    finally:
        intruder.stop()
