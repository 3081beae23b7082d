"""``GET /jobs/{id}?wait=N`` served below the framework, because thousands of them wait at once.

A request held by FastAPI costs about 24 KB while it waits (request object, dependency
resolution, middleware frames); this path costs about half, so one replica holds 10,000 waiting
requests in well under 300 MB. The FastAPI route of the same path stays for the documentation and
for requests this path does not take (no ``wait``, or a ``wait`` it cannot read). A client that
disconnects ends its wait at once, so abandoned requests do not hold waiter slots.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from job_orchestrator.asgi import disconnected, send_json
from job_orchestrator.auth import ApiKeys
from job_orchestrator.problems import PROBLEM_JSON, problem_for
from job_orchestrator.service import JobService
from job_orchestrator.waiters import is_final

logger = logging.getLogger(__name__)


def long_poll_target(scope: Scope) -> tuple[str, float] | None:
    """(job id, seconds) when ``scope`` is a GET /jobs/{id} with a valid positive ``wait``."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    parts = scope["path"].split("/")
    if len(parts) != 3 or parts[1] != "jobs" or not parts[2]:
        return None
    query = scope.get("query_string", b"")
    if b"wait=" not in query:
        return None
    params = dict(parse_qsl(query.decode("latin-1")))
    try:
        wait = float(params.get("wait", ""))
    except ValueError:
        return None  # FastAPI answers the 422
    if not wait > 0:  # also rejects NaN
        return None
    return parts[2], wait


class LongPoll:
    """ASGI middleware taking the long-poll GETs; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = long_poll_target(scope)
        service: JobService | None = (
            getattr(scope["app"].state, "service", None) if target else None
        )
        if target is None or service is None:
            await self.app(scope, receive, send)
            return
        job_id, wait = target
        headers: dict[str, str] = {}
        api_keys: ApiKeys = scope["app"].state.api_keys
        try:
            # The same API key check and owner scoping as the FastAPI routes.
            caller = api_keys.owner_from_headers(scope["headers"])
            body: dict[str, Any] = await service.get_waiting(
                job_id, service.wait_budget(wait), caller, partial(disconnected, receive)
            )
            status = 200
            if not is_final(body):
                headers["Retry-After"] = str(service.settings.retry_after_seconds)
            content_type = "application/json"
        except Exception as exc:
            problem = problem_for(exc, service.settings.retry_after_seconds)
            if problem.status >= 500:
                logger.error("GET %s failed: %s", scope["path"], exc, exc_info=exc)
            body, status, content_type = problem.body(scope["path"]), problem.status, PROBLEM_JSON
            headers.update(problem.headers)
        await send_json(send, status, body, content_type, headers)
