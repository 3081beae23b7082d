"""microservice-x end to end: real Redis, real sidecars, the app as `python -m microservice_x`.

Job events are published the way the orchestrator's outbox publishes them (a CloudEvent passed
through by a sidecar, so its id is kept), from the sidecar of a small stand-in app registered as
`job-orchestrator`, which also answers the service invocation of POST /jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.microservice_x.stack import (
    MX,
    App,
    Sidecar,
    cloud_event,
    get_json,
    http,
    job_data,
    wait_for,
    write_components,
)
from tests.procs import free_port

#: This module's own Redis database (see write_components).
REDIS_DB = 11

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    mx_sidecar: Sidecar
    mx: App
    orchestrator_sidecar: Sidecar
    orchestrator: App
    components: Path
    registry: Path

    def publish(self, job_id: str, event_type: str, sequence: int, **kw: Any) -> dict[str, Any]:
        owner = kw.pop("owner", MX)
        event_id = kw.pop("event_id", None)
        data = job_data(job_id, event_type, sequence, owner, **kw)
        event = cloud_event(job_id, event_type, data, event_id)
        self.orchestrator_sidecar.publish(event)
        return event

    def view(self, job_id: str) -> dict[str, Any] | None:
        status, _, body = http("GET", f"{self.mx.url}/jobs/{job_id}")
        if status == 404:
            return None
        assert status == 200, (status, body)
        result: dict[str, Any] = body
        return result

    def wait_view(self, job_id: str, status: str, events: int, timeout: float = 15) -> Any:
        def reached() -> Any:
            view = self.view(job_id)
            ok = view and view["status"] == status and len(view["events"]) == events
            return view if ok else None

        return wait_for(
            reached, timeout=timeout, what=f"job {job_id} {status} with {events} events"
        )

    def start_mx(self) -> None:
        self.mx_sidecar = Sidecar(
            MX,
            self.components,
            self.registry,
            app_port=free_port(),
            log_dir=self.mx_sidecar.log_dir,
        ).start()
        assert self.mx_sidecar.app_port is not None
        self.mx = App("microservice_x", self.mx_sidecar, self.mx_sidecar.app_port).start()
        self.mx_sidecar.wait_ready()


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("mx-e2e")
    components = write_components(base / "components", redis_server.host, REDIS_DB)
    registry = base / "registry"
    orchestrator_sidecar = Sidecar(
        "job-orchestrator", components, registry, app_port=free_port(), log_dir=base
    )
    assert orchestrator_sidecar.app_port is not None
    mx_sidecar = Sidecar(MX, components, registry, app_port=free_port(), log_dir=base)
    assert mx_sidecar.app_port is not None
    orchestrator = App(
        "tests.microservice_x.orchestrator_stub",
        orchestrator_sidecar,
        orchestrator_sidecar.app_port,
    )
    mx = App("microservice_x", mx_sidecar, mx_sidecar.app_port)
    built = Stack(mx_sidecar, mx, orchestrator_sidecar, orchestrator, components, registry)
    try:
        for process in (orchestrator_sidecar, mx_sidecar, orchestrator, mx):
            process.start()
        orchestrator_sidecar.wait_ready()
        mx_sidecar.wait_ready()
        yield built
    finally:
        # built.mx* may be the restarted ones; stopping a stopped process is a no-op.
        for process in (
            built.mx,
            built.mx_sidecar,
            mx,
            mx_sidecar,
            orchestrator,
            orchestrator_sidecar,
        ):
            process.stop()


def new_id() -> str:
    return uuid.uuid4().hex


def test_events_of_an_owned_job_arrive_with_their_types_in_order(stack: Stack) -> None:
    job_id = new_id()
    for sequence, event_type in enumerate(["job.created", "job.updated", "job.completed"], 1):
        stack.publish(job_id, event_type, sequence)
    view = stack.wait_view(job_id, "Completed", 3)
    assert [e["type"] for e in view["events"]] == ["job.created", "job.updated", "job.completed"]
    assert view["result"] == {"waited": 1}
    assert view["owner"] == MX
    assert job_id in [j["id"] for j in get_json(f"{stack.mx.url}/jobs?limit=500")]


def test_events_of_other_owners_or_none_leave_no_trace(stack: Stack) -> None:
    others = {"other": new_id(), "none": new_id(), "missing": new_id()}
    stack.publish(others["other"], "job.created", 1, owner="someone-else")
    stack.publish(others["none"], "job.created", 1, owner=None)
    missing = cloud_event(
        others["missing"], "job.created", job_data(others["missing"], "job.created", 1)
    )
    del missing["data"]["owner"]
    stack.orchestrator_sidecar.publish(missing)
    # Markers published after them, one through each path an event can take (daprd dead-letters
    # events that match no rule): an owned event, and an owned poison event.
    marker = new_id()
    stack.publish(marker, "job.created", 1)
    poison = publish_poison(stack, new_id())
    stack.wait_view(marker, "New", 1)
    wait_for(lambda: poison["id"] in dead_letter_ids(stack), what="the poison marker")
    listed = [j["id"] for j in get_json(f"{stack.mx.url}/jobs?limit=500")]
    subjects = [d["subject"] for d in get_json(f"{stack.mx.url}/dead-letters?limit=500")]
    for job_id in others.values():
        assert stack.view(job_id) is None
        assert job_id not in listed
        assert job_id not in subjects


def publish_poison(stack: Stack, job_id: str) -> dict[str, Any]:
    """An event of ours that can never be applied: its sequence is not a number."""
    event = cloud_event(job_id, "job.updated", job_data(job_id, "job.updated", 2))
    event["data"]["sequence"] = "not a number"
    stack.orchestrator_sidecar.publish(event)
    return event


def dead_letter_ids(stack: Stack) -> list[str]:
    return [d["id"] for d in get_json(f"{stack.mx.url}/dead-letters?limit=500")]


def test_redelivered_and_out_of_order_events_leave_the_right_state(stack: Stack) -> None:
    job_id = new_id()
    completed = stack.publish(job_id, "job.completed", 3)
    stack.publish(job_id, "job.created", 1)
    stack.publish(job_id, "job.updated", 2)
    stack.orchestrator_sidecar.publish(completed)  # the same CloudEvent (same id) again
    marker = new_id()
    stack.publish(marker, "job.created", 1)
    stack.wait_view(marker, "New", 1)
    view = stack.wait_view(job_id, "Completed", 3)
    assert view["sequence"] == 3
    assert view["eventCount"] == 3
    assert view["progress"]["percent"] == 50
    assert [e["type"] for e in view["events"]] == ["job.created", "job.updated", "job.completed"]
    assert [e["id"] for e in view["events"]][-1] == completed["id"]


def test_a_poison_event_lands_in_dead_letters(stack: Stack) -> None:
    job_id = new_id()
    poison = publish_poison(stack, job_id)

    def recorded() -> Any:
        letters = get_json(f"{stack.mx.url}/dead-letters?limit=500")
        return next((d for d in letters if d["id"] == poison["id"]), None)

    letter = wait_for(recorded, timeout=15, what="the dead letter")
    assert letter["subject"] == job_id
    assert letter["topic"] == "job-events"
    assert "data.sequence" in letter["reason"]
    assert letter["event"]["data"] == poison["data"]
    assert stack.view(job_id) is None


def test_post_jobs_reaches_the_orchestrator_through_service_invocation(stack: Stack) -> None:
    key = new_id()
    request = {"type": "wait", "input": {"seconds": 2}, "maxAttempts": 2}
    status, headers, body = http(
        "POST", f"{stack.mx.url}/jobs", request, headers={"Idempotency-Key": key}
    )
    assert status == 202, body
    assert headers["location"] == f"/jobs/{body['id']}"
    assert body["owner"] == MX
    assert body["job"]["id"] == body["id"]
    received = get_json(f"{stack.orchestrator.url}/received")
    mine = [r for r in received if r["idempotencyKey"] == key]
    assert len(mine) == 1
    assert mine[0]["body"] == {**request, "owner": MX}
    # The orchestrator's own refusal is passed on, as a problem.
    status, headers, problem = http("POST", f"{stack.mx.url}/jobs", {"type": "unknown"})
    assert status == 422
    assert headers["content-type"] == "application/problem+json"
    assert problem["title"] == "Unknown job type"
    assert problem["knownTypes"] == ["wait"]
    # An answer without a job id is the orchestrator's fault, not the caller's.
    status, headers, problem = http("POST", f"{stack.mx.url}/jobs", {"type": "no-id"})
    assert status == 502
    assert headers["content-type"] == "application/problem+json"
    assert "without a job id" in problem["detail"]


def test_a_restart_of_microservice_x_loses_nothing(stack: Stack) -> None:
    job_id = new_id()
    stack.publish(job_id, "job.created", 1)
    stack.publish(job_id, "job.updated", 2)
    before = stack.wait_view(job_id, "InProgress", 2)
    assert stack.mx.proc is not None and stack.mx_sidecar.proc is not None
    stack.mx.proc.kill9()
    stack.mx_sidecar.proc.kill9()
    # The job goes on while microservice-x is down; its events wait in the stream.
    stack.publish(job_id, "job.updated", 3)
    stack.publish(job_id, "job.completed", 4)
    stack.start_mx()
    after = stack.wait_view(job_id, "Completed", 4, timeout=30)
    assert [e["type"] for e in after["events"]] == [
        "job.created",
        "job.updated",
        "job.updated",
        "job.completed",
    ]
    assert after["events"][:2] == before["events"]


def test_events_sent_while_the_app_is_down_are_applied_after_it_restarts(stack: Stack) -> None:
    """Only the app dies: its sidecar cannot deliver, so Dapr dead-letters the events (no retry
    policy); the dead-letter delivery stays pending until the app is back, then applies them."""
    job_id = new_id()
    stack.publish(job_id, "job.created", 1)
    stack.wait_view(job_id, "New", 1)
    assert stack.mx.proc is not None
    stack.mx.proc.kill9()
    stack.publish(job_id, "job.updated", 2)
    stack.publish(job_id, "job.completed", 3)
    stack.mx.start()
    view = stack.wait_view(job_id, "Completed", 3, timeout=30)
    assert [e["type"] for e in view["events"]] == ["job.created", "job.updated", "job.completed"]
    assert job_id not in [d["subject"] for d in get_json(f"{stack.mx.url}/dead-letters?limit=500")]
