"""``create_app(settings)``: the FastAPI app whose lifespan owns the Dapr client and the tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI

from dapr_support import heap
from dapr_support.http_methods import HeadAsGet
from job_orchestrator import api, loopwatch, problems, subscriptions
from job_orchestrator.auth import ApiKeys, document_security, require_app_token
from job_orchestrator.bodylimit import BodyLimit
from job_orchestrator.deliveries import SidecarDeliveries
from job_orchestrator.errors import StoreUnavailable
from job_orchestrator.fast_submit import FastSubmit
from job_orchestrator.handlers import HandlerRegistry, default_registry
from job_orchestrator.handover import Handover
from job_orchestrator.index import JobIndex
from job_orchestrator.listing import QueryListing
from job_orchestrator.longpoll import LongPoll
from job_orchestrator.metrics import JobMetrics, LiveCounts
from job_orchestrator.reannounce import Reannounce
from job_orchestrator.requeue import Requeue
from job_orchestrator.service import JobService
from job_orchestrator.settings import Settings
from job_orchestrator.sidecar_client import connect
from job_orchestrator.store import JobStore
from job_orchestrator.waiters import Waiters
from job_orchestrator.worker import Worker

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Start long-running jobs without HTTP timeouts (asynchronous request-reply).

Try **POST /Jobs/StartJobWithTimeout** first: a `wait` job of 5 s with `timeoutSeconds: 2`
answers 202 with a `Location`; `GET` that location (or `?wait=10`) until it is `Completed`.
Every change is published as a CloudEvent on the Dapr pub/sub topic `job-events`.
"""


def create_app(settings: Settings, registry: HandlerRegistry | None = None) -> FastAPI:
    """The orchestrator app; nothing connects until the lifespan starts."""
    handlers = registry or default_registry()
    metrics = JobMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = await connect(settings)
        store = JobStore(client, settings)
        waiters = Waiters()
        tasks: list[asyncio.Task[None]] = []
        listing: QueryListing | JobIndex
        await _inspect(store)
        if store.query_api:
            listing = QueryListing(store)
        else:
            listing = JobIndex(store, settings.retention_seconds, settings.listing_flush_seconds)
            tasks.append(asyncio.create_task(listing.run()))
        worker = None
        if settings.runs_worker:
            on_delivered = listing.delivered if isinstance(listing, JobIndex) else None
            worker = Worker(
                store, handlers, waiters, settings, on_delivered=on_delivered, metrics=metrics
            )
            tasks.append(asyncio.create_task(loopwatch.watch(worker.described)))
        requeue = handover = None
        if settings.runs_api and settings.requeue_after_seconds > 0:
            requeue = Requeue(store, settings.requeue_after_seconds)
            tasks.append(asyncio.create_task(requeue.run()))
            handover = Handover(
                store,
                requeue.unheard,
                settings.replica_name,
                settings.events_topic,
                save_every=requeue.sweep_seconds,
                look_every=settings.requeue_after_seconds / 2,
                ttl_seconds=settings.retention_seconds,
                instance=requeue.instance,
            )
            tasks.append(asyncio.create_task(handover.run()))
        reannounce = None
        if store.at_risk is not None:
            reannounce = Reannounce(store, store.at_risk)
            tasks.append(asyncio.create_task(reannounce.run()))
        service = JobService(
            store, handlers, waiters, worker, listing, settings, metrics=metrics, requeue=requeue
        )
        app.state.settings = settings
        app.state.store = store
        app.state.waiters = waiters
        app.state.worker = worker
        app.state.requeue = requeue
        app.state.service = service
        metrics.watch(_live_counts(service, reannounce, handover))
        logger.info(
            "job-orchestrator %s up as %s (listing via %s, job types: %s)",
            settings.replica_name,
            settings.role.value,
            type(listing).__name__,
            ", ".join(handlers.names),
        )
        heap.settle()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if handover is not None:
                await handover.close()
            if worker is not None:
                await worker.close()
            if isinstance(listing, JobIndex):
                with contextlib.suppress(Exception):
                    await listing.flush()
            metrics.unwatch()
            await store.close()
            await client.close()  # type: ignore[no-untyped-call]

    app = FastAPI(
        title="job-orchestrator",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.api_keys = ApiKeys(settings.api_keys)
    app.state.worker = None
    app.state.requeue = None
    app.state.started = datetime.now(UTC)
    routers = [api.health_router, subscriptions.router]
    routers.insert(0, api.router if settings.runs_api else api.worker_only_router)
    for router in routers:
        # Only the sidecar may deliver work and events (APP_API_TOKEN, when configured).
        internal = router is subscriptions.router
        app.include_router(router, dependencies=[Depends(require_app_token)] if internal else None)
    problems.install(
        app, settings.retry_after_seconds, [r for router in routers for r in router.routes]
    )
    if settings.runs_api:
        app.add_middleware(FastSubmit)  # inside BodyLimit, which counts what it reads
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, exempt_prefix=subscriptions.INTERNAL_PREFIX
    )
    app.add_middleware(SidecarDeliveries)
    if settings.runs_api:
        # Added last, so outermost: a waiting GET holds as few frames as possible.
        app.add_middleware(LongPoll)
    app.add_middleware(HeadAsGet)  # outermost: everything below sees HEAD as GET

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = problems.document_problems(FastAPI.openapi(app))
            app.openapi_schema = document_security(schema, bool(settings.api_keys))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def begin_shutdown(app: FastAPI) -> None:
    """The server stops taking connections: answer every waiting request now.

    Waits (``timeoutSeconds``, ``Prefer: wait``, ``?wait``) get the job as last known (202 with
    its ``Location``) and event streams end, so callers poll another replica instead of being
    cut off when the graceful-shutdown timeout runs out. The worker claims nothing new; its
    running jobs may still finish within the grace, and are handed back when it ends.
    """
    waiters: Waiters | None = getattr(app.state, "waiters", None)
    if waiters is not None:
        waiters.release()
        logger.info("shutting down: released %s waiting request(s)", len(waiters))
    worker: Worker | None = getattr(app.state, "worker", None)
    if worker is not None:
        worker.begin_shutdown(app.state.settings.shutdown_grace_seconds)


def _live_counts(
    service: JobService, reannounce: Reannounce | None, handover: Handover | None
) -> LiveCounts:
    worker, slots, store, requeue = (
        service.worker,
        service.waiter_slots,
        service.store,
        service.requeue,
    )
    return LiveCounts(
        running=lambda: worker.running if worker is not None else 0,
        waiting=lambda: slots.in_use,
        waiting_capacity=slots.capacity,
        sidecar_calls=lambda: store.calls,
        sidecar_failures=lambda: store.failed_calls,
        unheard=lambda: len(requeue.unheard) if requeue is not None else 0,
        reannounced=lambda: requeue.announced if requeue is not None else 0,
        adopted=lambda: handover.adopted if handover is not None else 0,
        held_back=lambda: store.breaker.refused,
        finals_suspect=lambda: store.at_risk.suspects if store.at_risk is not None else 0,
        finals_reannounced=lambda: reannounce.announced if reannounce is not None else 0,
    )


async def _inspect(store: JobStore) -> None:
    try:
        await store.inspect()
    except StoreUnavailable as exc:
        logger.warning("could not read sidecar metadata (%s); listing through the index", exc)
