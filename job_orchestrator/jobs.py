"""The job record and its state machine: which changes are allowed, and what a worker should do.

Pure: no I/O, time comes in as an argument, so every rule is unit-tested without a sidecar.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class JobStatus(enum.StrEnum):
    NEW = "New"  #: saved and queued, no worker yet
    IN_PROGRESS = "InProgress"  #: a worker holds the lease and runs the handler
    COMPLETED = "Completed"  #: final; ``result`` holds the handler's return value
    FAILED = "Failed"  #: final; ``error`` says why
    CANCELED = "Canceled"  #: final; canceled before it finished


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})

#: The only moves a job may make; a final status never changes. InProgress -> InProgress is a
#: progress or attempt update.
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.NEW: frozenset({JobStatus.IN_PROGRESS, JobStatus.CANCELED}),
    JobStatus.IN_PROGRESS: frozenset(
        {JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


#: Longest job id accepted from outside (ids made here are 36-character UUIDs).
MAX_ID_LENGTH = 200


def valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` can name a job: Dapr refuses state keys containing ``||``."""
    return 0 < len(job_id) <= MAX_ID_LENGTH and "||" not in job_id


class InvalidTransition(Exception):
    """A change the state machine forbids, e.g. anything after a final status."""

    def __init__(self, job: Job, target: JobStatus) -> None:
        self.job = job
        self.target = target
        super().__init__(f"job {job.id} cannot go from {job.status} to {target}")


#: Times formatted and parsed lately: a job's times are shown again at each of its changes.
_RECENT_TIMES = 4096


@functools.lru_cache(maxsize=_RECENT_TIMES)
def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@functools.lru_cache(maxsize=_RECENT_TIMES)
def iso(ts: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    return _epoch(value)


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored. Times are epoch seconds; ``public()`` renders them as RFC 3339."""

    id: str
    type: str
    status: JobStatus
    created_at: float
    updated_at: float
    owner: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    progress_percent: float = 0.0
    progress_message: str = ""
    result: Any = None
    result_dropped: bool = False  #: DELETE /jobs/{id}/result removed the result
    error: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    attempt: int = 0  #: handler runs started, takeovers included
    failures: int = 0  #: handler runs that raised
    takeovers: int = 0  #: runs taken over after a lost lease
    #: its worker stopped gracefully and gave the lease up: the next claim is no lost worker
    handed_back: bool = False
    max_attempts: int = 1
    run_timeout_seconds: float | None = None
    worker: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    sequence: int = 1  #: grows with every published change
    #: ``<instance>:<n>``: the listing index part and number its creating process gave it
    indexed_as: str | None = None
    #: The ledger (handover.py) of the process that created it, where one keeps a ledger: a
    #: replica taking a gone one's ledger over finds by it, through the query API, the jobs
    #: created after that ledger's last save
    created_by: str | None = None
    #: W3C trace context of the request that created the job; every event of the job carries it
    traceparent: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def public(self) -> dict[str, Any]:
        """The job as clients and event subscribers see it (no lease internals)."""
        started, completed = iso(self.started_at), iso(self.completed_at)
        duration = None
        if started is not None and completed is not None:
            # From the times as shown (milliseconds), so every read of the job says the same.
            duration = round(_epoch(completed) - _epoch(started), 3)
        return {
            "id": self.id,
            "type": self.type,
            "owner": self.owner,
            "status": self.status.value,
            "input": self.input,
            "progress": {"percent": self.progress_percent, "message": self.progress_message},
            "result": self.result,
            "error": self.error,
            "createdAt": iso(self.created_at),
            "startedAt": started,
            "updatedAt": iso(self.updated_at),
            "completedAt": completed,
            "attempt": self.attempt,
            "maxAttempts": self.max_attempts,
            "runTimeoutSeconds": self.run_timeout_seconds,
            "worker": self.worker,
            "durationSeconds": duration,
            "cancelRequested": self.cancel_requested,
            "handedBack": self.handed_back,
            "sequence": self.sequence,
        }

    def to_record(self, public: dict[str, Any] | None = None) -> dict[str, Any]:
        """The stored form: the public view (``public``, if already made) plus the fields only
        workers need."""
        record = dict(public) if public is not None else self.public()
        record.update(
            kind="job",
            failures=self.failures,
            takeovers=self.takeovers,
            leaseExpiresAt=self.lease_expires_at,
            resultDropped=self.result_dropped,
        )
        if self.indexed_as is not None:
            record["indexedAs"] = self.indexed_as
        if self.created_by is not None:
            record["createdBy"] = self.created_by
        if self.traceparent is not None:
            record["traceparent"] = self.traceparent
        return record

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        progress = data.get("progress") or {}
        return cls(
            id=data["id"],
            type=data["type"],
            status=JobStatus(data["status"]),
            created_at=parse_iso(data["createdAt"]) or 0.0,
            updated_at=parse_iso(data["updatedAt"]) or 0.0,
            owner=data.get("owner"),
            input=data.get("input") or {},
            progress_percent=float(progress.get("percent", 0.0)),
            progress_message=str(progress.get("message", "")),
            result=data.get("result"),
            result_dropped=bool(data.get("resultDropped", False)),
            error=data.get("error"),
            started_at=parse_iso(data.get("startedAt")),
            completed_at=parse_iso(data.get("completedAt")),
            attempt=int(data.get("attempt", 0)),
            failures=int(data.get("failures", 0)),
            takeovers=int(data.get("takeovers", 0)),
            handed_back=bool(data.get("handedBack", False)),
            max_attempts=int(data.get("maxAttempts", 1)),
            run_timeout_seconds=data.get("runTimeoutSeconds"),
            worker=data.get("worker"),
            lease_expires_at=data.get("leaseExpiresAt"),
            cancel_requested=bool(data.get("cancelRequested", False)),
            sequence=int(data.get("sequence", 1)),
            indexed_as=data.get("indexedAs"),
            created_by=data.get("createdBy"),
            traceparent=data.get("traceparent"),
        )


def new_job(
    job_id: str,
    job_type: str,
    job_input: dict[str, Any],
    *,
    owner: str | None,
    max_attempts: int,
    run_timeout_seconds: float | None,
    now: float,
    indexed_as: str | None = None,
    created_by: str | None = None,
    traceparent: str | None = None,
) -> Job:
    return Job(
        id=job_id,
        type=job_type,
        status=JobStatus.NEW,
        created_at=now,
        updated_at=now,
        owner=owner,
        input=job_input,
        max_attempts=max_attempts,
        run_timeout_seconds=run_timeout_seconds,
        indexed_as=indexed_as,
        created_by=created_by,
        traceparent=traceparent,
    )


def transition(job: Job, target: JobStatus, now: float, **changes: Any) -> Job:
    """``job`` moved to ``target`` with ``changes``; one more sequence number."""
    if target not in ALLOWED_TRANSITIONS[job.status]:
        raise InvalidTransition(job, target)
    changes.setdefault("updated_at", now)
    if target in FINAL_STATUSES:
        changes.setdefault("completed_at", now)
        changes.setdefault("lease_expires_at", None)
    return dataclasses.replace(job, status=target, sequence=job.sequence + 1, **changes)


def update(job: Job, now: float, **changes: Any) -> Job:
    """A change that keeps the status InProgress (progress, cancel request, next attempt)."""
    return transition(job, job.status, now, **changes)


class Delivery(enum.Enum):
    """What a worker does with a queued job it was handed."""

    DONE = "done"  #: final or gone: acknowledge
    BUSY = "busy"  #: another worker holds a valid lease: leave it pending
    CLAIM = "claim"  #: New: start the first attempt
    TAKE_OVER = "take_over"  #: InProgress but its lease expired: the worker died
    CANCEL = "cancel"  #: cancel requested while nobody runs it: write Canceled
    GIVE_UP = "give_up"  #: lost its worker too often: write Failed


def decide_delivery(job: Job | None, now: float, max_takeovers: int) -> Delivery:
    if job is None or job.is_final:
        return Delivery.DONE
    if job.status is JobStatus.NEW:
        return Delivery.CANCEL if job.cancel_requested else Delivery.CLAIM
    if job.lease_expires_at is not None and job.lease_expires_at > now:
        return Delivery.BUSY
    if job.cancel_requested:
        return Delivery.CANCEL
    if job.takeovers >= max_takeovers and not job.handed_back:
        return Delivery.GIVE_UP
    return Delivery.TAKE_OVER


def claim(job: Job, worker: str, now: float, lease_seconds: float) -> Job:
    """``job`` started (or taken over) by ``worker`` with a fresh lease."""
    takeover = job.status is JobStatus.IN_PROGRESS and not job.handed_back
    return transition(
        job,
        JobStatus.IN_PROGRESS,
        now,
        worker=worker,
        attempt=job.attempt + 1,
        takeovers=job.takeovers + (1 if takeover else 0),
        handed_back=False,
        started_at=job.started_at if job.started_at is not None else now,
        lease_expires_at=now + lease_seconds,
    )


def renew(job: Job, lease_expires_at: float) -> Job:
    """The same job with a longer lease; not a published change, so no new sequence."""
    return dataclasses.replace(job, lease_expires_at=lease_expires_at)


def hand_back(job: Job, now: float) -> Job:
    """``job`` given up by a worker that is stopping: its lease ends now, so the next delivery
    takes it over at once, and that takeover does not count towards ``max_takeovers``. A
    published change: its event is what brings the job to another replica's worker."""
    return update(job, now, lease_expires_at=now, handed_back=True)


def retry_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff before the next attempt: base, 2*base, 4*base ... up to cap."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * (2 ** (failures - 1))))
