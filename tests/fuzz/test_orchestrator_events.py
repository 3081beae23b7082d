"""Bad job events delivered to the running orchestrator's subscription routes.

Anyone may publish on `job-events`; the orchestrator's queue and broadcast deliveries must answer
DROP or SUCCESS to an event that can never be a job of its own, never a 5xx or RETRY: with no
dead-letter topic on `jobqueue` either one makes the broker hand the poison back forever. After
them the replica still answers /healthz and still runs jobs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fuzz.conftest import Stack
from tests.microservice_x.stack import cloud_event, get_json, http, job_data

#: Paths the orchestrator's programmatic subscriptions name (job_orchestrator/subscriptions.py).
RUN_ROUTE = "/internal/jobs/run"
CHANGED_ROUTE = "/internal/jobs/changed"
ACCEPTED = ({"status": "DROP"}, {"status": "SUCCESS"})


def created(**data: Any) -> dict[str, Any]:
    job_id = str(uuid.uuid4())
    job = {**job_data(job_id, "job.created", 1), "maxAttempts": 1, **data}
    return cloud_event(str(job["id"]), "job.created", job)


#: job.created events the queue can deliver (the rule matches on type only) whose job is broken.
POISON: dict[str, Any] = {
    "progress is a number": created(progress=7),
    "progress is a string": created(progress="half"),
    "progress is a list": created(progress=[50]),
    "id holds the key separator": created(id="a||b"),
    "status unknown": created(status="Exploded"),
    "sequence is text": created(sequence="one"),
    "createdAt is a number": created(createdAt=12),
    "attempt is a list": created(attempt=[1]),
    "data is a list": {**created(), "data": [1, 2]},
    "data is null": {**created(), "data": None},
}


def deliver(stack: Stack, route: str, body: bytes) -> tuple[int, Any]:
    status, _, answer = http(
        "POST", stack.orchestrator.url + route, body, content_type="application/cloudevents+json"
    )
    return status, answer


@pytest.mark.parametrize("name", POISON)
def test_a_broken_job_created_is_dropped_by_the_run_route(stack: Stack, name: str) -> None:
    status, answer = deliver(stack, RUN_ROUTE, json.dumps(POISON[name]).encode())
    assert status == 200 and answer in ACCEPTED, (status, answer)


@pytest.mark.parametrize("name", POISON)
def test_a_broken_job_event_is_dropped_by_the_broadcast_route(stack: Stack, name: str) -> None:
    event = {**POISON[name], "type": "job.completed"}
    status, answer = deliver(stack, CHANGED_ROUTE, json.dumps(event).encode())
    assert status == 200 and answer in ACCEPTED, (status, answer)


@pytest.mark.parametrize("route", [RUN_ROUTE, CHANGED_ROUTE])
@pytest.mark.parametrize("body", [b"", b"{oops", b"null", b"[]", b'"x"', b"[" * 50_000])
def test_a_body_that_is_no_event_is_dropped(stack: Stack, route: str, body: bytes) -> None:
    status, answer = deliver(stack, route, body)
    assert status == 200 and answer in ACCEPTED, (status, answer)


@pytest.fixture(autouse=True)
def _still_running_jobs(stack: Stack) -> Iterator[None]:
    yield
    stack.check_alive()
    status, _, job = http(
        "POST",
        f"{stack.orchestrator.url}/jobs",
        {"type": "wait", "input": {"seconds": 0.05}},
        headers={"Prefer": "wait=0.5"},
    )
    assert status in (200, 202), (status, job)
    final = get_json(f"{stack.orchestrator.url}/jobs/{job['id']}?wait=0.5")
    assert final["status"] in ("InProgress", "New", "Completed"), final
