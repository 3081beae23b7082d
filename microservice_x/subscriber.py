"""The routes the sidecar delivers job events and dead letters to.

Answers follow Dapr's pub/sub contract: SUCCESS (applied, duplicate or not ours), DROP (malformed:
the sidecar dead-letters it), RETRY (the state store failed: Dapr dead-letters or redelivers it,
and a valid event coming back through the dead-letter topic is applied then).
Bad input never raises: an error answer would be retried, and a poison event would come back.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from microservice_x.deadletters import dead_letter_from
from microservice_x.deps import MetricsDep, SettingsDep, StoreDep
from microservice_x.errors import StoreError
from microservice_x.events import (
    JobEvent,
    MalformedEvent,
    bulk_entries,
    is_bulk,
    parse_body,
    parse_event,
)
from microservice_x.metrics import NOT_OURS, STORE_FAILED, EventMetrics
from microservice_x.store import ViewStore
from microservice_x.view import Reduction

logger = logging.getLogger(__name__)

#: Paths named in components/subscription-microservice-x.yaml.
JOB_EVENTS_ROUTE = "/events/jobs"
DEAD_LETTERS_ROUTE = "/events/dead-letters"

SUCCESS = {"status": "SUCCESS"}
RETRY = {"status": "RETRY"}
DROP = {"status": "DROP"}

router = APIRouter(include_in_schema=False)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _cloud_event_id(decoded: object) -> str:
    if isinstance(decoded, dict) and isinstance(decoded.get("id"), str):
        return str(decoded["id"])
    return "?"


async def _apply(
    store: ViewStore, metrics: EventMetrics, event: JobEvent, received_at: str, via: str
) -> dict[str, str]:
    """Fold an owned event into its view; one log line either way."""
    job = event.job
    try:
        reduction = await store.apply(event, received_at)
    except StoreError as exc:
        metrics.event(event, STORE_FAILED)
        logger.warning("%s %s job=%s type=%s RETRY: %s", via, event.id, job.id, event.type, exc)
        return RETRY
    metrics.reduced(event, reduction.outcome, received_at)
    view = reduction.view
    progress = view.progress.percent if view.progress else None
    logger.info(
        "%s %s job=%s type=%s seq=%s -> status=%s progress=%s%% (%s)",
        via,
        event.id,
        job.id,
        event.type,
        job.sequence,
        view.status,
        progress,
        reduction.outcome,
    )
    return SUCCESS


def _ours(event: JobEvent, app_id: str, metrics: EventMetrics) -> bool:
    if event.job.owner == app_id:
        return True
    metrics.event(event, NOT_OURS)
    # The subscription's rule filters these out; checked again in case a route is shared.
    logger.info(
        "event %s job=%s owner=%r is not ours, ignored", event.id, event.job.id, event.job.owner
    )
    return False


@router.post(JOB_EVENTS_ROUTE)
async def on_job_event(
    request: Request, store: StoreDep, settings: SettingsDep, metrics: MetricsDep
) -> dict[str, Any]:
    """Fold a job event (or a bulk delivery of them) into the views of their jobs."""
    received_at = utc_now()
    decoded: Any = None
    try:
        decoded = parse_body(await request.body())
        if is_bulk(decoded):
            return await _on_bulk(decoded, store, metrics, settings.app_id, received_at)
        event = parse_event(decoded)
    except MalformedEvent as exc:
        metrics.malformed()
        logger.warning("event %s malformed, DROP: %s", _cloud_event_id(decoded), exc.reason)
        return DROP
    if not _ours(event, settings.app_id, metrics):
        return SUCCESS
    return await _apply(store, metrics, event, received_at, "event")


async def _on_bulk(
    message: dict[str, Any],
    store: ViewStore,
    metrics: EventMetrics,
    app_id: str,
    received_at: str,
) -> dict[str, Any]:
    """A bulk delivery (Dapr's bulkSubscribe): one status per entry, the views in two calls."""
    entries = bulk_entries(message)
    statuses: dict[str, str] = {}
    owned: list[tuple[str, JobEvent]] = []
    for entry_id, event_or_error in entries:
        if isinstance(event_or_error, MalformedEvent):
            metrics.malformed()
            logger.warning("event in entry %s malformed, DROP: %s", entry_id, event_or_error.reason)
            statuses[entry_id] = DROP["status"]
        elif _ours(event_or_error, app_id, metrics):
            owned.append((entry_id, event_or_error))
        else:
            statuses[entry_id] = SUCCESS["status"]
    if owned:
        try:
            outcomes = await store.apply_many([(event, received_at) for _, event in owned])
        except StoreError as exc:
            logger.warning("bulk of %s events RETRY: %s", len(owned), exc)
            outcomes = [exc] * len(owned)
        for (entry_id, event), outcome in zip(owned, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                metrics.event(event, STORE_FAILED)
            else:
                metrics.reduced(event, outcome.outcome, received_at)
            statuses[entry_id] = _logged(event, outcome, "bulk event")
    return {"statuses": [{"entryId": e, "status": statuses[e]} for e, _ in entries]}


def _logged(event: JobEvent, outcome: Reduction | StoreError, via: str) -> str:
    job = event.job
    if isinstance(outcome, StoreError):
        logger.warning("%s %s job=%s type=%s RETRY: %s", via, event.id, job.id, event.type, outcome)
        return RETRY["status"]
    view = outcome.view
    logger.info(
        "%s %s job=%s type=%s seq=%s -> status=%s (%s)",
        via,
        event.id,
        job.id,
        event.type,
        job.sequence,
        view.status,
        outcome.outcome,
    )
    return SUCCESS["status"]


@router.post(DEAD_LETTERS_ROUTE)
async def on_dead_letter(
    request: Request, store: StoreDep, settings: SettingsDep, metrics: MetricsDep
) -> dict[str, str]:
    """A dead-lettered job event: apply it if it is valid, else record it."""
    received_at = utc_now()
    body = await request.body()
    try:
        event = parse_event(parse_body(body))
    except MalformedEvent:
        pass
    else:
        if event.job.owner != settings.app_id:
            metrics.event(event, NOT_OURS)
            logger.info(
                "dead letter %s job=%s owner=%r is not ours, ignored",
                event.id,
                event.job.id,
                event.job.owner,
            )
            return SUCCESS
        # A valid event is dead-lettered when its delivery failed (with no retry policy, Dapr
        # dead-letters on the first RETRY or refused connection): apply it now, idempotently.
        return await _apply(store, metrics, event, received_at, "dead-lettered event")
    entry = dead_letter_from(body, received_at)
    if entry.owner is not None and entry.owner != settings.app_id:
        logger.info("dead letter %s owner=%r is not ours, ignored", entry.id, entry.owner)
        return SUCCESS
    try:
        added = await store.add_dead_letter(entry)
    except StoreError as exc:
        logger.warning("dead letter %s RETRY: %s", entry.id, exc)
        return RETRY
    if added:
        metrics.dead_letter_recorded()
    logger.warning(
        "dead letter %s type=%s subject=%s recorded=%s: %s",
        entry.id,
        entry.type,
        entry.subject,
        added,
        entry.reason,
    )
    return SUCCESS
