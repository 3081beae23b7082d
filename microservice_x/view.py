"""The job view: what microservice-x knows of a job, folded from its events.

Pure. Delivery is at-least-once and in any order, so the reducer is idempotent on the event's
CloudEvent id (and on the job's `sequence`, which names one change) and never lets an older
change overwrite a newer one; older events still take their place in the history.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from microservice_x.events import JobData, JobEvent, JobStatus

#: Progress events can be many on a long job; past this the oldest `job.updated` records go.
MAX_HISTORY = 200


class EventRecord(BaseModel):
    """One event as it arrived here."""

    model_config = ConfigDict(strict=True, extra="ignore")

    id: str = Field(examples=["5f0b7c1e-9f1a-4a4e-8a57-4f3e0c2f1d10"])
    type: str = Field(examples=["job.created"])
    sequence: int = Field(examples=[1])
    status: JobStatus
    receivedAt: str = Field(examples=["2026-11-22T10:00:00.123456+00:00"])
    #: When the publisher says it sent the event (CloudEvent `time`).
    time: str | None = None


class JobView(JobData):
    """A job as microservice-x knows it from events: last state plus every event seen."""

    #: Events seen, in the job's own order (`sequence`), each with its arrival time.
    events: list[EventRecord] = Field(default_factory=list)
    #: Distinct events ever applied, including ones trimmed from `events`.
    eventCount: int = 0
    #: Highest `sequence` trimmed from `events`; such old events count as already seen.
    trimmedThrough: int | None = None
    lastEventAt: str | None = None

    @property
    def event_types(self) -> list[str]:
        return [record.type for record in self.events]


class Outcome(StrEnum):
    APPLIED = "applied"  #: the newest change so far: the job's state was replaced
    STALE = "stale"  #: an older change: recorded in the history, state kept
    DUPLICATE = "duplicate"  #: already seen (same id or same sequence): nothing changes


@dataclass(frozen=True, slots=True)
class Reduction:
    view: JobView
    outcome: Outcome


_VIEW_ONLY_FIELDS = frozenset({"events", "eventCount", "trimmedThrough", "lastEventAt"})


def already_seen(view: JobView, event: JobEvent) -> bool:
    sequence = event.job.sequence
    if view.trimmedThrough is not None and sequence <= view.trimmedThrough:
        return True
    return any(r.id == event.id or r.sequence == sequence for r in view.events)


def _trim(history: list[EventRecord]) -> tuple[list[EventRecord], int | None]:
    """Drop the oldest progress records (then the oldest of any kind) past MAX_HISTORY."""
    excess = len(history) - MAX_HISTORY
    if excess <= 0:
        return history, None
    dropped: set[int] = set()
    for index, record in enumerate(history):
        if len(dropped) == excess:
            break
        if record.type == "job.updated":
            dropped.add(index)
    for index in range(len(history)):
        if len(dropped) == excess:
            break
        dropped.add(index)
    kept = [r for i, r in enumerate(history) if i not in dropped]
    return kept, max(history[i].sequence for i in dropped)


def apply_event(view: JobView | None, event: JobEvent, received_at: str) -> Reduction:
    """Fold one event into the view of its job (None: the first event seen for it)."""
    if view is not None and already_seen(view, event):
        return Reduction(view, Outcome.DUPLICATE)
    record = EventRecord(
        id=event.id,
        type=event.type,
        sequence=event.job.sequence,
        status=event.job.status,
        receivedAt=received_at,
        time=event.time,
    )
    history = list(view.events) if view is not None else []
    bisect.insort(history, record, key=lambda r: r.sequence)
    history, trimmed = _trim(history)
    previous_trim = view.trimmedThrough if view is not None else None
    if trimmed is not None and previous_trim is not None:
        trimmed = max(trimmed, previous_trim)
    if view is None or event.job.sequence > view.sequence:
        state = event.job.model_dump()
        outcome = Outcome.APPLIED
    else:
        state = view.model_dump(exclude=set(_VIEW_ONLY_FIELDS))
        outcome = Outcome.STALE
    updated = JobView.model_validate(
        {
            **state,
            "events": [r.model_dump() for r in history],
            "eventCount": (view.eventCount if view is not None else 0) + 1,
            "trimmedThrough": trimmed if trimmed is not None else previous_trim,
            "lastEventAt": received_at,
        }
    )
    return Reduction(updated, outcome)
