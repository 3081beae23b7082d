"""APP_ENV roles shape the app: which routes exist and which subscriptions it asks for."""

from __future__ import annotations

import httpx

from job_orchestrator.app import create_app
from job_orchestrator.settings import Role, Settings
from job_orchestrator.subscriptions import CHANGED_RULE, RUN_RULE


async def get(role: Role, path: str) -> httpx.Response:
    # No lifespan: these routes need no sidecar.
    transport = httpx.ASGITransport(app=create_app(Settings(role=role)))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get(path)


async def test_worker_role_has_no_job_api_but_consumes_the_queue() -> None:
    missing = await get(Role.WORKER, "/jobs/x")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    subs = (await get(Role.WORKER, "/dapr/subscribe")).json()
    assert [s["pubsubname"] for s in subs] == ["jobbroadcast", "jobqueue"]
    queue = subs[1]
    assert queue["topic"] == "job-events"
    assert queue["routes"] == {"rules": [{"match": RUN_RULE, "path": "/internal/jobs/run"}]}
    assert "default" not in queue["routes"]  # other events: acknowledged, app not called


async def test_api_role_only_listens_for_changes() -> None:
    subs = (await get(Role.API, "/dapr/subscribe")).json()
    assert subs == [
        {
            "pubsubname": "jobbroadcast",
            "topic": "job-events",
            "routes": {"rules": [{"match": CHANGED_RULE, "path": "/internal/jobs/changed"}]},
        }
    ]
    spec = (await get(Role.API, "/openapi.json")).json()
    assert "/Jobs/StartJobWithTimeout" in spec["paths"]
    assert not any(p.startswith("/internal") or p.startswith("/dapr") for p in spec["paths"])
