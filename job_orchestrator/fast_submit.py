"""``POST /jobs`` and ``POST /Jobs/StartJobWithTimeout`` served below the framework.

Every job starts with one of these requests, so FastAPI's routing, dependency solving and
request objects were a fixed cost on every job. This path takes only the requests it answers
exactly as the routes in ``api.py`` do, through the same functions: a JSON body that
``JobRequest`` accepts, and at most one Idempotency-Key that the route's checks pass. Anything
else (a body that fails validation, another content type, several keys) goes on to FastAPI
with its body intact, so each error answer has one source. The routes stay, for the
documentation and for those requests.
"""

from __future__ import annotations

import json
import logging
from functools import partial

from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from dapr_support import request_rules
from dapr_support.tracecontext import valid_traceparent
from job_orchestrator.api import start_answer, submit_answer
from job_orchestrator.asgi import disconnected, read_body, replayed
from job_orchestrator.models import JobRequest
from job_orchestrator.problems import problem_for, problem_response
from job_orchestrator.service import JobService

logger = logging.getLogger(__name__)

SUBMIT_PATH = "/jobs"
START_PATH = "/Jobs/StartJobWithTimeout"
_PATHS = frozenset((SUBMIT_PATH, START_PATH))


class Unusual(Exception):
    """A request whose answer only the FastAPI route gives."""


def _json_body(headers: Headers) -> bool:
    media_type = headers.get("content-type", "").partition(";")[0]
    return media_type.strip().lower() == "application/json"


def idempotency_key(headers: Headers) -> str | None:
    """The Idempotency-Key as the route reads it; Unusual when the route would refuse it."""
    values = headers.getlist(request_rules.IDEMPOTENCY_KEY)
    if not values:
        return None
    if len(values) > 1 or not 1 <= len(values[0]) <= request_rules.MAX_IDEMPOTENCY_KEY:
        raise Unusual
    key = values[0].strip(" \t")
    if not key:
        raise Unusual
    return key


def job_request(body: bytes) -> JobRequest:
    """The body as the route validates it (``json.loads``, then the model); else Unusual."""
    try:
        return JobRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError included
        raise Unusual from None


class FastSubmit:
    """ASGI middleware answering well-formed job submissions; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _PATHS:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        service: JobService | None = getattr(state, "service", None)
        headers = Headers(scope=scope)
        try:
            if service is None or not _json_body(headers):
                raise Unusual
            key = idempotency_key(headers)
        except Unusual:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        try:
            job = job_request(body)
        except Unusual:
            await self.app(scope, replayed(body, receive), send)
            return
        try:
            # The same API key check and owner scoping as the routes (first header of each).
            caller = state.api_keys.owner_from_headers(scope["headers"])
            trace = valid_traceparent(headers.get("traceparent"))
            gone = partial(disconnected, receive)
            if scope["path"] == SUBMIT_PATH:
                preferences = headers.getlist("prefer")
                response = await submit_answer(service, job, caller, trace, key, preferences, gone)
            else:
                response = await start_answer(service, job, caller, trace, key, gone)
        except Exception as exc:
            problem = problem_for(exc, service.settings.retry_after_seconds)
            if problem.status >= 500:
                logger.error("POST %s failed: %s", scope["path"], exc, exc_info=exc)
            response = problem_response(problem, scope["path"])
        await response(scope, receive, send)
