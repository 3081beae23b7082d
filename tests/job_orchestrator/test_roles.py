"""APP_ENV roles shape the app: which routes exist and which subscriptions it asks for."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import httpx

from job_orchestrator.app import create_app
from job_orchestrator.settings import Role, Settings
from job_orchestrator.subscriptions import RUN_RULE, changed_rule
from sidecar.components import RouteRule
from sidecar.routing import Router
from tests.job_orchestrator.inprocess import InProcess


async def get(role: Role, path: str) -> httpx.Response:
    # No lifespan: these routes need no sidecar.
    transport = httpx.ASGITransport(app=create_app(Settings(role=role)))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get(path)


async def test_worker_role_has_no_job_api_but_consumes_the_queue() -> None:
    for path in ("/jobs/x", "/jobs", "/jobs/x/result"):
        missing = await get(Role.WORKER, path)
        # Not 404: that would say the job does not exist.
        assert missing.status_code == 503, (path, missing.text)
        assert missing.headers["content-type"] == "application/problem+json"
        assert "APP_ENV=worker" in missing.json()["detail"]
    transport = httpx.ASGITransport(app=create_app(Settings(role=Role.WORKER)))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        start = await client.post("/Jobs/StartJobWithTimeout", json={})
        assert start.status_code == 503
        assert (await client.get("/nothing")).status_code == 404
    subs = (await get(Role.WORKER, "/dapr/subscribe")).json()
    assert [s["pubsubname"] for s in subs] == ["jobbroadcast", "jobqueue"]
    queue = subs[1]
    assert queue["topic"] == "job-events"
    assert queue["routes"] == {"rules": [{"match": RUN_RULE, "path": "/internal/jobs/run"}]}
    assert "default" not in queue["routes"]  # other events: acknowledged, app not called


async def test_api_role_only_listens_for_changes() -> None:
    subs = (await get(Role.API, "/dapr/subscribe")).json()
    assert len(subs) == 1
    assert (subs[0]["pubsubname"], subs[0]["topic"]) == ("jobbroadcast", "job-events")
    [rule] = subs[0]["routes"]["rules"]
    assert rule["path"] == "/internal/jobs/changed"
    assert "timestamp(event.time) > timestamp(" in rule["match"]
    spec = (await get(Role.API, "/openapi.json")).json()
    assert "/Jobs/StartJobWithTimeout" in spec["paths"]
    assert not any(p.startswith("/internal") or p.startswith("/dapr") for p in spec["paths"])


async def test_routing_errors_are_problems_too() -> None:
    wrong_method = await get(Role.BOTH, "/Jobs/StartJobWithTimeout")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"
    assert wrong_method.json()["status"] == 405
    nowhere = await get(Role.BOTH, "/nowhere")
    assert nowhere.status_code == 404
    assert nowhere.headers["content-type"] == "application/problem+json"


def test_broadcast_rule_skips_history_with_daprs_cel() -> None:
    """The rule as the sidecar's CEL router evaluates it: recent final events only."""
    since = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    router = Router([RouteRule(changed_rule(since, "host-1"), "/changed")])

    def route(kind: str, time: str, **data: object) -> str | None:
        return router.route({"type": kind, "time": time, "data": {"id": "j", **data}})

    assert route("job.completed", "2026-01-01T12:00:01Z") == "/changed"
    assert route("job.completed", "2026-01-01T11:59:59Z") is None  # history
    assert route("job.updated", "2026-01-01T12:00:01Z", cancelRequested=True) == "/changed"
    assert route("job.updated", "2026-01-01T12:00:01Z", cancelRequested=False) is None
    assert route("job.created", "2026-01-01T12:00:01Z") is None
    # Changes this replica wrote itself are not delivered back to it; other replicas' are.
    assert route("job.completed", "2026-01-01T12:00:01Z", changedBy="host-1") is None
    assert route("job.completed", "2026-01-01T12:00:01Z", changedBy="host-2") == "/changed"


def test_queue_rule_brings_new_and_handed_back_jobs_with_daprs_cel() -> None:
    """The queue's rule as the sidecar's CEL router evaluates it: a job waiting for a worker."""
    router = Router([RouteRule(RUN_RULE, "/run")])

    def route(kind: str, **data: object) -> str | None:
        return router.route({"type": kind, "data": {"id": "j", "status": "InProgress", **data}})

    assert route("job.created", status="New") == "/run"
    assert route("job.updated", handedBack=True) == "/run"
    # Progress, claims and takeovers: someone runs the job; an event from before the field.
    assert route("job.updated", handedBack=False) is None
    assert route("job.updated") is None
    assert route("job.completed", status="Completed", handedBack=True) is None


async def test_start_up_objects_are_frozen_before_serving(inproc: InProcess) -> None:
    # A second app on the same sidecar: its lifespan connects, then settles the heap.
    gc.unfreeze()
    app = create_app(inproc.settings)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0
