"""FastAPI dependencies: the lifespan's long-lived objects and the request headers route
handlers take.

All are ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
per request for what is an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from dapr_support import request_rules
from dapr_support.tracecontext import request_traceparent
from microservice_x.metrics import EventMetrics
from microservice_x.orchestrator import OrchestratorClient
from microservice_x.settings import Settings
from microservice_x.store import ViewStore


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> ViewStore:
    store: ViewStore = request.app.state.store
    return store


async def get_orchestrator(request: Request) -> OrchestratorClient:
    orchestrator: OrchestratorClient = request.app.state.orchestrator
    return orchestrator


async def get_metrics(request: Request) -> EventMetrics:
    metrics: EventMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ViewStore, Depends(get_store)]
OrchestratorDep = Annotated[OrchestratorClient, Depends(get_orchestrator)]
MetricsDep = Annotated[EventMetrics, Depends(get_metrics)]
#: The caller's W3C trace, handed on to the orchestrator so the job's events continue it.
TraceDep = Annotated[str | None, Depends(request_traceparent)]


async def idempotency_key(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,  # an empty key would be one key shared by every client sending it
            max_length=request_rules.MAX_IDEMPOTENCY_KEY,
            description="Handed on to the orchestrator: the same key and body start one job.",
        ),
    ] = None,
) -> str | None:
    """The key as ``dapr_support.request_rules`` reads it, as the orchestrator does (``key``:
    FastAPI's checks and docs)."""
    if key is None:
        return None
    return request_rules.idempotency_key(request.headers.getlist(request_rules.IDEMPOTENCY_KEY))


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]
