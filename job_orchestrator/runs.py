"""A job running on this replica: its handler context, pending progress and how a run ended."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from typing import Any

from dapr_support.jsonbytes import dumps
from job_orchestrator.handlers import (
    JobContext,
    JobFailure,
    UnstorableResult,
    as_stored,
    stored_text,
)
from job_orchestrator.jobs import Job

logger = logging.getLogger(__name__)


class Answer(enum.StrEnum):
    """Pub/sub delivery answers understood by Dapr."""

    SUCCESS = "SUCCESS"  #: acknowledge
    RETRY = "RETRY"  #: leave pending; the broker redelivers it later


class LostJob(Exception):
    """The job was deleted, finished elsewhere or taken over: stop without writing."""


class Outcome(enum.Enum):
    """How one handler run ended."""

    DONE = "done"  #: returned a result
    FAILED = "failed"  #: raised
    CANCELED = "canceled"  #: stopped on request
    TIMED_OUT = "timed_out"  #: ran past runTimeoutSeconds


def _copied(job_input: dict[str, Any]) -> dict[str, Any]:
    """The handler's own copy of the input: what it changes there is not stored with the job,
    nor seen by a later attempt."""
    copy: dict[str, Any] = json.loads(dumps(job_input))
    return copy


def _message(exc: BaseException) -> str:
    """What ``exc`` says, even when its ``__str__`` fails."""
    try:
        return str(exc)
    except Exception as broken:
        return f"(its message could not be read: {type(broken).__name__})"


class Run:
    """One job running here: the job as last written, its etag, the context, a wake signal."""

    def __init__(self, job: Job, etag: str, loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self._etag = etag
        self._trusted = True  #: no other writer is known to have changed the job since
        self.loop = loop
        self.wake = asyncio.Event()
        self.progress: tuple[float, str] | None = None  #: reported, not yet written
        self.task: asyncio.Task[Answer] | None = None
        self.ctx = JobContext(job.id, _copied(job.input), self.report)

    def report(self, percent: float, message: str) -> None:
        """Progress from the handler; plain handlers call this from their worker thread."""
        self.progress = (percent, message)
        self.loop.call_soon_threadsafe(self.wake.set)

    def cancel(self) -> None:
        """Stop the handler. Called when someone else changed the job (cancel request, final
        elsewhere), so the etag we hold is no longer trusted for a job change."""
        self._trusted = False
        self.ctx.cancel()
        self.loop.call_soon_threadsafe(self.wake.set)

    def distrust(self) -> None:
        """Someone else may have changed the job: re-read before the next job change."""
        self._trusted = False

    def new_context(self) -> None:
        """A fresh context for the next attempt; a cancellation carries over."""
        cancelled = self.ctx.cancelled
        self.ctx = JobContext(self.job.id, _copied(self.job.input), self.report)
        if cancelled:
            self.ctx.cancel()

    @property
    def etag(self) -> str:
        """The etag of ``job`` when known ("" = read before the next write)."""
        return self._etag

    @etag.setter
    def etag(self, etag: str) -> None:
        self._etag = etag
        self._trusted = True

    def trusted(self, now: float, margin: float) -> tuple[Job, str] | None:
        """The job with its etag, when a job change may be written without reading it first.

        That is while the etag is our own last write's, our lease has at least ``margin``
        seconds left (no one may take the job over), and no other writer's change has reached
        us: other replicas' cancel requests and final writes come by broadcast and call
        ``cancel``. A change still on its way is the same race a read right before the write
        has; see the note in worker.py.
        """
        lease = self.job.lease_expires_at
        if self._etag and self._trusted and lease is not None and lease - now >= margin:
            return self.job, self._etag
        return None

    @property
    def known(self) -> tuple[Job, str] | None:
        """The job with its etag, when known: lets a lease renewal skip its read (a renewal
        that loses publishes nothing, unlike a job change)."""
        return (self.job, self.etag) if self.etag else None

    def outcome(self, handler: asyncio.Task[Any], max_result_bytes: int) -> tuple[Outcome, Any]:
        """How the finished ``handler`` ended, with its result (as stored) or error message."""
        if self.ctx.cancelled:
            return Outcome.CANCELED, None
        if handler.cancelled():
            # The worker cancels a handler only after a cancel request, a timeout or at
            # shutdown, none of which asks how it ended: this CancelledError came from the
            # handler's own code. Ending the job Canceled would announce a cancel nobody made.
            return Outcome.FAILED, "the handler raised CancelledError, but no cancel was asked"
        exc = handler.exception()
        if exc is None:
            try:
                return Outcome.DONE, as_stored(handler.result(), max_result_bytes)
            except UnstorableResult as unstorable:
                return Outcome.FAILED, str(unstorable)
        if isinstance(exc, JobFailure):
            return Outcome.FAILED, stored_text(_message(exc))
        logger.error("job %s: handler %s raised", self.job.id, self.job.type, exc_info=exc)
        return Outcome.FAILED, stored_text(f"{type(exc).__name__}: {_message(exc)}")

    def reported_fields(self) -> dict[str, Any]:
        """The progress the handler reported last that no write carried yet (progress writes
        are throttled), for the job's final write: a failed job shows how far it got."""
        if self.progress is None:
            return {}
        percent, message = self.progress
        return {"progress_percent": percent, "progress_message": message}

    def done_fields(self, result: Any) -> dict[str, Any]:
        """Completed: 100 %, with the last message the handler reported (even unpublished)."""
        message = self.progress[1] if self.progress is not None else self.job.progress_message
        return {
            "result": result,
            "error": None,
            "progress_percent": 100.0,
            "progress_message": message or "completed",
        }
