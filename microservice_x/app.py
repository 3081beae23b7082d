"""Builds the FastAPI app; its lifespan owns the Dapr client and the HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from dapr_support import heap
from dapr_support.clients import ClientKeeper
from dapr_support.http_methods import HeadAsGet
from microservice_x import api, responses, subscriber
from microservice_x.apptoken import require_app_token
from microservice_x.connections import (
    close_dapr_client,
    open_dapr_client,
    open_http_session,
    renew_dapr_client,
    wait_for_sidecar,
)
from microservice_x.metrics import EventMetrics
from microservice_x.orchestrator import OrchestratorClient
from microservice_x.problems import install_problem_handlers
from microservice_x.settings import Settings
from microservice_x.store import ViewStore

DESCRIPTION = """
A microservice that owns long-running jobs: it starts them on **job-orchestrator** through Dapr
service invocation, and learns how they go from the job events Dapr delivers to it (filtered to
its own jobs), instead of polling.
"""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        session = open_http_session(settings)
        try:
            await wait_for_sidecar(session, settings)
            client = open_dapr_client(settings)
            clients = ClientKeeper(client, lambda n: renew_dapr_client(session, settings, n))
            store = ViewStore(clients, settings.state_store, settings.view_retention_seconds)
            await store.inspect()
            try:
                app.state.store = store
                app.state.http_session = session
                app.state.orchestrator = OrchestratorClient(session, settings)
                heap.settle()
                yield
            finally:
                await store.close()
                await clients.close()
                await close_dapr_client(client)
        finally:
            await session.close()

    app = FastAPI(
        title="microservice-x",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = EventMetrics()
    install_problem_handlers(app, [*api.router.routes, *subscriber.router.routes])
    app.include_router(api.router)
    # Only the sidecar may deliver events (APP_API_TOKEN, when configured).
    app.include_router(subscriber.router, dependencies=[Depends(require_app_token)])
    app.add_middleware(HeadAsGet)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = responses.without_fastapi_422(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
