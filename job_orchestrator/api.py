"""The public job API (asynchronous request-reply): routes only translate HTTP to JobService."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from dapr_support import request_rules
from dapr_support.clients import sidecar_healthy
from dapr_support.metrics import METRICS_RESPONSES, metrics_response
from dapr_support.tracecontext import request_traceparent
from job_orchestrator.asgi import disconnected
from job_orchestrator.auth import CallerDep, scoped_idempotency_key
from job_orchestrator.errors import ApiNotServed, NotReady, OwnerMismatch
from job_orchestrator.events import event_type_name
from job_orchestrator.jobs import JobStatus
from job_orchestrator.models import (
    FAIL_EXAMPLE,
    QUICK_EXAMPLE,
    START_EXAMPLE,
    WAIT_EXAMPLE,
    Health,
    JobPage,
    JobRequest,
    JobView,
    Readiness,
)
from job_orchestrator.prefer import parse_prefer
from job_orchestrator.service import JobService, Outcome, Submission
from job_orchestrator.waiters import ClientGone, is_final


async def get_service(request: Request) -> JobService:
    # async: FastAPI would run a plain def dependency in its thread pool, once per request.
    service: JobService = request.app.state.service
    return service


ServiceDep = Annotated[JobService, Depends(get_service)]


def _client_gone(request: Request) -> ClientGone:
    """Returns once the caller disconnected: a waiting route stops waiting then, and gives its
    waiter slot back (what the request started, a job or a cancel, goes on)."""
    return partial(disconnected, request.receive)


#: The caller's W3C trace, which the job's events continue.
TraceDep = Annotated[str | None, Depends(request_traceparent)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,  # an empty key would be one key shared by every client sending it
        max_length=request_rules.MAX_IDEMPOTENCY_KEY,
        description="Same key and body: the same job comes back instead of a second one.",
    ),
]


async def idempotency_key(request: Request, key: IdempotencyKey = None) -> str | None:
    """The key as ``dapr_support.request_rules`` reads it (``key``: FastAPI's checks and docs).
    (async, as every dependency here: FastAPI runs a plain one in a thread, 0.1 ms a request)"""
    if key is None:
        return None
    return request_rules.idempotency_key(request.headers.getlist(request_rules.IDEMPOTENCY_KEY))


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobView,
        "description": "Not final yet: poll `Location` (after `Retry-After` seconds).",
    }
}
_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "Same Idempotency-Key still being processed", **_PROBLEM},
    403: {"description": "`owner` differs from the API key's owner", **_PROBLEM},
    413: {"description": "Body or job input too large", **_PROBLEM},
    415: {"description": "Body not sent as application/json", **_PROBLEM},
    422: {"description": "Invalid body, unknown job type or reused Idempotency-Key", **_PROBLEM},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown job", **_PROBLEM}}

#: Named examples Swagger offers in "Try it out", each ready to run as is.
EXAMPLES = {
    "wait-202": {
        "summary": "5 s job, wait 2 s: 202 + Location",
        "value": WAIT_EXAMPLE,
    },
    "wait-200": {"summary": "1 s job, wait up to 5 s: 200 with the result", "value": QUICK_EXAMPLE},
    "fail": {"summary": "A job that fails with a clear error", "value": FAIL_EXAMPLE},
}
JobBody = Annotated[JobRequest, Body(openapi_examples=EXAMPLES)]
#: POST /jobs waits only when asked with `Prefer: wait=N` (its examples in PREFER_EXAMPLES).
SUBMIT_EXAMPLES = {
    "start": {
        "summary": "5 s job: 202 + Location at once, or 200 with Prefer: wait=10",
        "value": START_EXAMPLE,
    },
    "fail": {
        "summary": "A job that fails with a clear error (200 with Prefer: wait=10)",
        "value": {"type": "wait", "input": {"seconds": 1, "fail": True}},
    },
}
SubmitBody = Annotated[JobRequest, Body(openapi_examples=SUBMIT_EXAMPLES)]
PREFER_EXAMPLES = {
    "none": {"summary": "Answer at once: 202 + Location", "value": ""},
    "wait": {"summary": "Wait up to 10 s: 200 if the job is final by then", "value": "wait=10"},
    "respond-async": {"summary": "Answer at once, said explicitly", "value": "respond-async"},
}

router = APIRouter(
    responses={
        503: {
            "description": "Sidecar or state store unavailable, or this replica holds too many "
            "waiting requests; retry after Retry-After"
        }
    }
)


def job_response(
    job: dict[str, Any], retry_after: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    """200 with a final job; 202 + Location + Retry-After while it still runs."""
    headers = dict(headers or {})
    location = f"/jobs/{job['id']}"
    if is_final(job):
        headers["Content-Location"] = location
        return JSONResponse(job, status_code=200, headers=headers)
    headers.update({"Location": location, "Retry-After": str(retry_after)})
    return JSONResponse(job, status_code=202, headers=headers)


def _submission(body: JobRequest, caller: str | None) -> Submission:
    """With an API key the job belongs to the key's owner; naming another owner is refused."""
    owner = body.owner
    if caller is not None:
        if owner is not None and owner != caller:
            raise OwnerMismatch(f"your API key is bound to owner {caller!r}, not {owner!r}")
        owner = caller
    return Submission(
        type=body.type,
        input=body.input,
        owner=owner,
        max_attempts=body.maxAttempts,
        run_timeout_seconds=body.runTimeoutSeconds,
    )


def _replay_headers(outcome: Outcome) -> dict[str, str]:
    return {"Idempotent-Replayed": "true"} if outcome.replayed else {}


@router.post(
    "/Jobs/StartJobWithTimeout",
    tags=["jobs"],
    response_model=JobView,
    responses={**_ACCEPTED, **_SUBMIT_ERRORS},
)
async def start_job_with_timeout(
    body: JobBody,
    request: Request,
    service: ServiceDep,
    caller: CallerDep,
    trace: TraceDep,
    idempotency_key: IdempotencyKeyDep,
) -> JSONResponse:
    """Start a job and wait up to `timeoutSeconds` for it: 200 with the result, else 202."""
    return await start_answer(service, body, caller, trace, idempotency_key, _client_gone(request))


async def start_answer(
    service: JobService,
    body: JobRequest,
    caller: str | None,
    trace: str | None,
    idempotency_key: str | None,
    gone: ClientGone,
) -> JSONResponse:
    """What POST /Jobs/StartJobWithTimeout answers, here or below the framework (fast_submit)."""
    outcome = await service.submit(
        _submission(body, caller),
        wait=service.wait_budget(body.timeoutSeconds),
        idempotency_key=scoped_idempotency_key(idempotency_key, caller),
        traceparent=trace,
        gone=gone,
    )
    return job_response(outcome.job, service.settings.retry_after_seconds, _replay_headers(outcome))


@router.post(
    "/jobs",
    tags=["jobs"],
    status_code=202,
    response_model=JobView,
    responses={
        200: {"model": JobView, "description": "Final within `Prefer: wait`"},
        **_SUBMIT_ERRORS,
    },
)
async def submit_job(
    body: SubmitBody,
    request: Request,
    service: ServiceDep,
    caller: CallerDep,
    trace: TraceDep,
    idempotency_key: IdempotencyKeyDep,
    prefer: Annotated[
        str | None,
        Header(
            alias="Prefer",
            description="RFC 7240, e.g. `wait=10` or `respond-async`",
            openapi_examples=PREFER_EXAMPLES,
        ),
    ] = None,
) -> JSONResponse:
    """Start a job: 202 + Location at once, or honour `Prefer: wait=N` (200 if done in time)."""
    # ``prefer`` documents the header in Swagger; RFC 7240 allows several, so read them all.
    preferences = request.headers.getlist("prefer")
    gone = _client_gone(request)
    return await submit_answer(service, body, caller, trace, idempotency_key, preferences, gone)


async def submit_answer(
    service: JobService,
    body: JobRequest,
    caller: str | None,
    trace: str | None,
    idempotency_key: str | None,
    preferences: list[str],
    gone: ClientGone,
) -> JSONResponse:
    """What POST /jobs answers, here or below the framework (fast_submit)."""
    prefs = parse_prefer(preferences)
    wait = service.wait_budget(prefs.wait) if prefs.wait is not None else 0.0
    outcome = await service.submit(
        _submission(body, caller),
        wait=wait,
        idempotency_key=scoped_idempotency_key(idempotency_key, caller),
        traceparent=trace,
        gone=gone,
    )
    headers = {"Vary": "Prefer", **_replay_headers(outcome)}
    applied = prefs.applied(
        wait if prefs.wait is not None else None, answered_async=not is_final(outcome.job)
    )
    if applied:
        headers["Preference-Applied"] = applied
    return job_response(outcome.job, service.settings.retry_after_seconds, headers)


@router.get(
    "/jobs",
    tags=["jobs"],
    response_model=JobPage,
    responses={422: {"description": "Invalid filter or cursor", **_PROBLEM}},
)
async def list_jobs(
    service: ServiceDep,
    caller: CallerDep,
    owner: Annotated[str | None, Query(max_length=200)] = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> JobPage:
    """List jobs, newest first, filtered by owner and status; follow `nextCursor` for more.

    Without the state store's query API (Redis, SQLite), a page examines a bounded part of the
    index: when a filter matches few jobs, a page may hold fewer than `limit` jobs, even none,
    with a `nextCursor` to go on from. With the query API (PostgreSQL), jobs created while you
    page are not listed, and while many are created, pages may be short or empty too. The list
    ends when `nextCursor` is null.
    """
    if caller is not None:
        if owner is not None and owner != caller:
            # Only the key's own jobs exist for this caller.
            return JobPage(items=[], nextCursor=None)
        owner = caller
    page = await service.list(owner, status.value if status else None, limit, cursor)
    return JobPage.model_validate({"items": page.items, "nextCursor": page.next_cursor})


@router.get(
    "/jobs/{job_id}",
    tags=["jobs"],
    response_model=JobView,
    responses=_NOT_FOUND,
)
async def get_job(
    job_id: str,
    request: Request,
    service: ServiceDep,
    caller: CallerDep,
    wait: Annotated[float, Query(ge=0, description="Long-poll up to N s for a final status")] = 0,
) -> JSONResponse:
    """The job; with `?wait=N` the answer comes as soon as it is final (or after N s)."""
    job = await service.get_waiting(
        job_id, service.wait_budget(wait), caller, _client_gone(request)
    )
    headers = {} if is_final(job) else {"Retry-After": str(service.settings.retry_after_seconds)}
    return JSONResponse(job, headers=headers)


@router.get(
    "/jobs/{job_id}/result",
    tags=["jobs"],
    responses={
        **_NOT_FOUND,
        409: {"description": "Not completed (yet)", **_PROBLEM},
        410: {"description": "Result deleted", **_PROBLEM},
    },
)
async def get_result(job_id: str, service: ServiceDep, caller: CallerDep) -> JSONResponse:
    """The result of a completed job (whatever its handler returned)."""
    return JSONResponse(await service.result(job_id, caller))


@router.delete(
    "/jobs/{job_id}/result",
    tags=["jobs"],
    status_code=204,
    responses={**_NOT_FOUND, 409: {"description": "Not completed", **_PROBLEM}},
)
async def delete_result(job_id: str, service: ServiceDep, caller: CallerDep) -> Response:
    """Drop a completed job's stored result; the job record stays."""
    await service.drop_result(job_id, caller)
    return Response(status_code=204)


@router.post(
    "/jobs/{job_id}/cancel",
    tags=["jobs"],
    response_model=JobView,
    responses={
        **_ACCEPTED,
        **_NOT_FOUND,
        409: {"description": "Already final, or it finished before it stopped", **_PROBLEM},
    },
)
async def cancel_job(
    job_id: str, request: Request, service: ServiceDep, caller: CallerDep
) -> JSONResponse:
    """Cancel: a New job at once; a running one is asked to stop (200 Canceled, or 202)."""
    job = await service.cancel(job_id, service.wait_budget(None), caller, _client_gone(request))
    return job_response(job, service.settings.retry_after_seconds)


@router.delete("/jobs/{job_id}", tags=["jobs"], status_code=204, responses=_NOT_FOUND)
async def delete_job(job_id: str, service: ServiceDep, caller: CallerDep) -> Response:
    """Cancel the job if it still runs, then remove it (it answers 404 afterwards)."""
    await service.delete(job_id, caller)
    return Response(status_code=204)


@router.get(
    "/jobs/{job_id}/events",
    tags=["jobs"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {"description": "The job is final and `Last-Event-ID` says the client saw that."},
        **_NOT_FOUND,
    },
)
async def job_events(
    job_id: str,
    service: ServiceDep,
    caller: CallerDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Sent by a reconnecting EventSource: the `sequence` it saw last",
        ),
    ] = None,
) -> Response:
    """Server-Sent Events: the job now, then every change until it is final.

    Each event's `id` is the job's `sequence`. A reconnecting client (`Last-Event-ID`) gets no
    version it already has: once it holds the final one the answer is 204, which tells a
    browser's EventSource to stop reconnecting.
    """
    changes = service.changes(job_id, service.settings.progress_interval_seconds, caller)
    first = await anext(changes)  # 404 before the stream starts
    seen = _sequence(last_event_id)
    has_first = seen is not None and int(first["sequence"]) <= seen
    if has_first and is_final(first):
        await changes.aclose()
        return Response(status_code=204)

    async def stream() -> AsyncIterator[bytes]:
        try:
            if not has_first:
                yield _sse(first)
            async for job in changes:
                yield _sse(job)
        finally:
            await changes.aclose()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sequence(last_event_id: str | None) -> int | None:
    """The sequence in a ``Last-Event-ID`` header; anything else is no id at all."""
    text = (last_event_id or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        return None


def _sse(job: dict[str, Any]) -> bytes:
    # allow_nan=False: a ValueError rather than an event no EventSource can parse.
    data = json.dumps(job, separators=(",", ":"), allow_nan=False)
    return f"id: {job['sequence']}\nevent: {event_type_name(job)}\ndata: {data}\n\n".encode()


health_router = APIRouter()


@health_router.get("/healthz", tags=["health"], response_model=Health)
async def healthz(request: Request) -> Health:
    """Liveness of this replica (also the sidecar's app health check)."""
    state = request.app.state
    return Health(
        status="ok",
        role=state.settings.role.value,
        replica=state.settings.replica_name,
        runningJobs=state.worker.running if state.worker is not None else 0,
        waitingRequests=len(state.waiters),
        sidecarCalls=state.store.calls,
    )


@health_router.get(
    "/readyz",
    tags=["health"],
    response_model=Readiness,
    responses={503: {"description": "Not ready: send requests elsewhere", **_PROBLEM}},
)
async def readyz(request: Request) -> Readiness:
    """Readiness of this replica (a load balancer's or Kubernetes' readiness probe): its Dapr
    sidecar answers its outbound health check. (A stopping replica needs no check: uvicorn
    closes its listening socket as the shutdown begins.)

    The state store and the broker are shared by every replica, so they are not checked: were
    Redis down, every replica would leave the load balancer, and callers would get connection
    errors instead of the job API's 503 with ``Retry-After``.
    """
    settings = request.app.state.settings
    if not await sidecar_healthy(settings.dapr_http_port, settings.dapr_api_token):
        raise NotReady(
            f"the Dapr sidecar on 127.0.0.1:{settings.dapr_http_port} does not answer its "
            "outbound health check (/v1.0/healthz/outbound)"
        )
    return Readiness(status="ready", role=settings.role.value, replica=settings.replica_name)


@health_router.get(
    "/metrics", tags=["health"], response_class=Response, responses=METRICS_RESPONSES
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this replica: jobs created, run and made final here (by type and
    status), queue and run times, running handlers, waiting requests, sidecar calls."""
    registry = request.app.state.metrics.registry
    return metrics_response(registry, request.headers.get("accept", ""))


#: What a worker-only replica (APP_ENV=worker) has instead of the job API.
worker_only_router = APIRouter(include_in_schema=False)


@worker_only_router.api_route(
    "/jobs{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
)
@worker_only_router.api_route("/Jobs/{rest:path}", methods=["GET", "HEAD", "POST"])
async def job_api_not_served() -> None:
    raise ApiNotServed(
        "this replica only runs jobs (APP_ENV=worker); send job API requests to a replica "
        "that serves the API (APP_ENV=api or both)"
    )
