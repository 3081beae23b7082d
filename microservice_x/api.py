"""microservice-x's public HTTP API: start jobs, read what their events said, dead letters."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dapr_support.metrics import METRICS_RESPONSES, metrics_response
from dapr_support.text import unicode_problem
from microservice_x import responses
from microservice_x.connections import sidecar_answers
from microservice_x.deadletters import DeadLetter
from microservice_x.deps import (
    IdempotencyKeyDep,
    MetricsDep,
    OrchestratorDep,
    SettingsDep,
    StoreDep,
    TraceDep,
)
from microservice_x.errors import InvalidRequest, JobNotFound, NotReady
from microservice_x.events import MAX_JOB_ID_LENGTH
from microservice_x.index import CURSOR_PATTERN, Position
from microservice_x.view import JobView

logger = logging.getLogger(__name__)

router = APIRouter()


class StartJobRequest(BaseModel):
    """The orchestrator's job body; fields other than these are passed on as they are."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"type": "wait", "input": {"seconds": 3}}]},
    )

    type: str = Field(default="wait", min_length=1, examples=["wait"])
    input: dict[str, Any] = Field(default_factory=dict, examples=[{"seconds": 3}])
    owner: str | None = Field(
        default=None, description="Always this service; another owner is refused"
    )

    @model_validator(mode="after")
    def _unicode_text(self) -> StartJobRequest:
        # Strings are checked by pydantic; the input and extra fields are passed on unchecked.
        problem = unicode_problem({"input": self.input, **(self.model_extra or {})}, "body")
        if problem is not None:
            raise ValueError(problem)
        return self


class StartedJob(BaseModel):
    """A job the orchestrator accepted; its events will tell how it goes."""

    id: str = Field(examples=["0b9f7a3c5d2e4f61a8b7c6d5e4f3a2b1"])
    owner: str = Field(examples=["microservice-x"])
    status: str | None = Field(default=None, examples=["New"])
    location: str = Field(examples=["/jobs/0b9f7a3c5d2e4f61a8b7c6d5e4f3a2b1"])
    job: dict[str, Any] = Field(description="The job as the orchestrator answered it")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    appId: str = Field(examples=["microservice-x"])


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    appId: str = Field(examples=["microservice-x"])


@router.post(
    "/jobs",
    status_code=202,
    response_model=StartedJob,
    responses=responses.START_JOB,
)
async def start_job(
    request: StartJobRequest,
    response: Response,
    orchestrator: OrchestratorDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    trace: TraceDep,
    idempotency_key: IdempotencyKeyDep,
) -> StartedJob:
    """Start a job on the orchestrator (Dapr service invocation) with this service as owner."""
    if request.owner is not None and request.owner != settings.app_id:
        raise InvalidRequest(
            f"owner must be {settings.app_id!r} (or left out), not {request.owner!r}"
        )
    body = request.model_dump(exclude_unset=True)
    body["owner"] = settings.app_id
    job = await orchestrator.start_job(body, idempotency_key, trace)
    metrics.started(request.type)
    location = f"/jobs/{job['id']}"
    response.headers["Location"] = location
    status = job.get("status")
    logger.info("started job %s (%s) on %s", job["id"], request.type, settings.orchestrator_app_id)
    return StartedJob(
        id=job["id"],
        owner=settings.app_id,
        status=status if isinstance(status, str) else None,
        location=location,
        job=job,
    )


@router.get(
    "/jobs",
    response_model=list[JobView],
    responses={
        200: {
            "description": "A page of jobs, newest first",
            "headers": {
                "Link": {
                    "description": 'The next page (`rel="next"`, RFC 8288), when one follows',
                    "schema": {"type": "string"},
                }
            },
        },
        **responses.LIST_JOBS,
    },
)
async def list_jobs(
    request: Request,
    response: Response,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    status: Annotated[
        Literal["New", "InProgress", "Completed", "Failed", "Canceled"] | None, Query()
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description="Where the previous page ended: take it from that page's Link header",
        ),
    ] = None,
) -> list[JobView]:
    """The jobs this service owns, newest first, as their events described them. When more
    follow, the `Link` header points to the next page. One request looks at no more than 2,000
    jobs, so a page filtered by `status` may hold fewer than `limit` and still have a next one."""
    after = None if cursor is None else Position.parse(cursor)
    views, next_position = await store.list_jobs(limit, status, after)
    if next_position is not None:
        query = urlencode({**request.query_params, "cursor": next_position.cursor()})
        response.headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return views


@router.get(
    "/jobs/{job_id}",
    response_model=JobView,
    responses=responses.GET_JOB,
)
async def get_job(job_id: str, store: StoreDep) -> JobView:
    """One job as its events described it: status, progress, result or error, events in order."""
    # Such an id cannot be a state key, so no event could ever have created it.
    if "||" in job_id or len(job_id) > MAX_JOB_ID_LENGTH:
        raise JobNotFound(f"no events seen for job {job_id!r}")
    view = await store.get_job(job_id)
    if view is None:
        raise JobNotFound(f"no events seen for job {job_id!r}")
    return view


@router.get(
    "/dead-letters",
    response_model=list[DeadLetter],
    responses=responses.DEAD_LETTERS,
)
async def list_dead_letters(
    store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[DeadLetter]:
    """Job events that could not be applied (malformed or undeliverable), newest first."""
    return await store.dead_letters(limit)


@router.get("/healthz", response_model=Health)
async def healthz(settings: SettingsDep) -> Health:
    """Liveness: the process answers."""
    return Health(appId=settings.app_id)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=responses.READYZ,
)
async def readyz(request: Request, settings: SettingsDep) -> Readiness:
    """Readiness (a readiness probe): the Dapr sidecar answers its outbound health check.
    The state store is shared, so it is not checked (its outage is the API's 503)."""
    if not await sidecar_answers(request.app.state.http_session, settings):
        raise NotReady(
            f"the Dapr sidecar at {settings.dapr_http_url} does not answer its outbound "
            "health check (/v1.0/healthz/outbound)"
        )
    return Readiness(appId=settings.app_id)


@router.get("/metrics", response_class=Response, responses=METRICS_RESPONSES)
async def metrics(request: Request, metrics: MetricsDep) -> Response:
    """Prometheus metrics: job events delivered here by type and what became of them, their
    delay from the job change, dead letters recorded, jobs started."""
    return metrics_response(metrics.registry, request.headers.get("accept", ""))
