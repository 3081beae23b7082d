"""What the orchestrator consumes from ``job-events``: queued work and other replicas' changes.

``jobqueue`` (competing consumer group) brings job.created, and the job.updated of a job handed
back by a stopping replica, to one replica, which runs the job and answers when it is final.
``jobbroadcast`` (a group per replica) brings final events and cancel requests to every
replica, to wake waiting requests and stop handlers. The deliveries themselves are served below
FastAPI (``deliveries.py``); this module says what they do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from job_orchestrator import events
from job_orchestrator.errors import JobNotFound, StoreUnavailable
from job_orchestrator.requeue import Requeue
from job_orchestrator.runs import Answer
from job_orchestrator.settings import Settings
from job_orchestrator.waiters import Waiters, is_final
from job_orchestrator.worker import Worker

logger = logging.getLogger(__name__)

INTERNAL_PREFIX = "/internal/"
RUN_PATH = f"{INTERNAL_PREFIX}jobs/run"
CHANGED_PATH = f"{INTERNAL_PREFIX}jobs/changed"

_FINAL_TYPES = ", ".join(f'"{t}"' for t in events.FINAL_EVENT_TYPES)
#: New jobs, and jobs a stopping replica handed back (worker.py): both wait for a worker.
RUN_RULE = (
    f'event.type == "{events.CREATED}" || (event.type == "{events.UPDATED}" && '
    "has(event.data.handedBack) && event.data.handedBack == true)"
)
CHANGED_RULE = (
    f"event.type in [{_FINAL_TYPES}] || "
    f'(event.type == "{events.UPDATED}" && event.data.cancelRequested == true)'
)
#: Reads a job (public form) from the store; JobNotFound, StoreUnavailable.
ReadJob = Callable[[str], Awaitable[dict[str, Any]]]
#: How far back a new replica still wants broadcast events (clock skew between hosts).
BROADCAST_LOOKBACK = timedelta(minutes=1)


def changed_rule(since: datetime, me: str) -> str:
    """CHANGED_RULE for events newer than ``since`` that replica ``me`` did not write.

    A ``{uuid}`` consumer group is created at the start of the stream, so a new replica would
    otherwise be handed the whole history; older events can matter to nobody waiting here. A
    replica's own changes already woke its waiters and stopped its handlers in-process, so the
    sidecar acknowledges them without a delivery.
    """
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mine = f"has(event.data.changedBy) && event.data.changedBy == {json.dumps(me)}"
    return f'({CHANGED_RULE}) && timestamp(event.time) > timestamp("{stamp}") && !({mine})'


def subscriptions(settings: Settings, started: datetime) -> list[dict[str, Any]]:
    """The programmatic subscriptions (Dapr v2 format with routing rules, no default route)."""
    rule = changed_rule(started - BROADCAST_LOOKBACK, settings.replica_name)
    subs = [
        {
            "pubsubname": settings.broadcast_pubsub,
            "topic": settings.events_topic,
            "routes": {"rules": [{"match": rule, "path": CHANGED_PATH}]},
        }
    ]
    if settings.runs_worker:
        subs.append(
            {
                "pubsubname": settings.queue_pubsub,
                "topic": settings.events_topic,
                "routes": {"rules": [{"match": RUN_RULE, "path": RUN_PATH}]},
            }
        )
    return subs


router = APIRouter(include_in_schema=False)


@router.get("/dapr/subscribe")
async def dapr_subscribe(request: Request) -> list[dict[str, Any]]:
    return subscriptions(request.app.state.settings, request.app.state.started)


async def run_delivery(body: bytes, worker: Worker | None, requeue: Requeue | None = None) -> str:
    """Run a queued job, holding the delivery until it is final; the delivery's status."""
    try:
        job = events.job_from_event(events.parse_event(body))
    except events.MalformedEvent as exc:
        # Answering anything but DROP would have the broker hand the poison back forever.
        logger.warning("dropping a queue message that carries no job: %s", exc)
        return "DROP"
    if requeue is not None:
        requeue.heard(job["id"])  # its announcement got through
    if worker is None:
        return Answer.RETRY.value
    try:
        answer = await worker.deliver(job["id"])
    except StoreUnavailable as exc:
        logger.warning("job %s: %s; the broker will redeliver it", job["id"], exc)
        answer = Answer.RETRY
    return answer.value


async def changed_delivery(
    body: bytes,
    waiters: Waiters,
    worker: Worker | None,
    read: ReadJob,
    requeue: Requeue | None = None,
) -> str:
    """Another replica changed a job: wake waiters here, stop a handler running here."""
    try:
        job = events.job_from_event(events.parse_event(body))
    except events.MalformedEvent as exc:
        logger.warning("dropping a broadcast message that carries no job: %s", exc)
        return "DROP"
    if requeue is not None:
        requeue.heard(job["id"])  # taken up elsewhere: final, or asked to stop
    if events.may_be_rounded(job):
        # Waiters answer with the job as stored, not with digits the event lost.
        try:
            job = await read(job["id"])
        except (JobNotFound, StoreUnavailable) as exc:
            logger.warning(
                "job %s: waiters get it as its event carries it, integers past 2**53 perhaps "
                "rounded (reading it failed: %s)",
                job["id"],
                exc,
            )
    waiters.notify(job)
    if worker is not None and (is_final(job) or job.get("cancelRequested")):
        worker.recheck(job["id"])
    return "SUCCESS"
