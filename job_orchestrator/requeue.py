"""Announce again the jobs whose ``job.created`` may have been lost, so no job stays New forever.

A job reaches a worker only through its ``job.created`` event, which the outbox publishes. Two
real faults lose that event after the job is saved: daprd's outbox relay gives up on an event
when it cannot read the state store for about 10 s (the broker then acknowledges the internal
message), and a broker that comes back without its latest writes (a Redis restarted empty, a
failover that lost recent writes) loses the queued messages. So the replica that creates a job
keeps it in an ``Unheard`` table until it hears of it; one unheard of ``REQUEUE_AFTER_SECONDS``
later is read, and if it is still New it is saved again, unchanged, over its etag: the outbox
publishes the same ``job.created`` (same ``sequence``) a second time. Then the job is looked at
again after doubling pauses while it stays New.

A job that is merely waiting in a long queue is New too: its second announcement is a duplicate
queue message, which a worker finds claimed or finished and acknowledges (the doubling pauses
bound how many a backlog makes). A job whose creator stopped before looking at it is not
covered: the table lives in the creating process.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from job_orchestrator.errors import StoreUnavailable
from job_orchestrator.jobs import Job, JobStatus
from job_orchestrator.store import JobStore
from job_orchestrator.unheard import Unheard

logger = logging.getLogger(__name__)

#: Jobs looked at concurrently (their reads and writes share the store's batched calls).
LOOKS_AT_ONCE = 64
#: The longest pause between two sweeps of the table.
MAX_SWEEP_SECONDS = 5.0


def still_new(job: Job) -> Job | None:
    """The job to save again, unchanged, when it still waits for a worker; else None."""
    return job if job.status is JobStatus.NEW and not job.cancel_requested else None


class Requeue:
    """Looks at this replica's unheard-of jobs and announces again the ones still New."""

    def __init__(
        self, store: JobStore, after: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._clock = clock
        #: Names this process's table (its ledger's key) and the jobs it creates (createdBy).
        self.instance = uuid.uuid4().hex[:12]
        self.unheard = Unheard(after)
        self.sweep_seconds = min(MAX_SWEEP_SECONDS, after / 4)
        self.announced = 0  #: jobs announced again so far

    def created(self, job_id: str) -> None:
        self.unheard.created(job_id, self._clock())

    def heard(self, job_id: str) -> None:
        self.unheard.heard(job_id)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            await self.sweep()

    async def sweep(self) -> None:
        """Look at every job that is due (``LOOKS_AT_ONCE`` at a time)."""
        due = list(self.unheard.due(self._clock()))
        for first in range(0, len(due), LOOKS_AT_ONCE):
            chunk = due[first : first + LOOKS_AT_ONCE]
            await asyncio.gather(*(self._look(job_id, pause) for job_id, pause in chunk))

    async def _look(self, job_id: str, pause: float) -> None:
        try:
            mutation = await self._store.mutate(job_id, still_new)
        except StoreUnavailable as exc:
            logger.warning("job %s: could not look whether it is still New: %s", job_id, exc)
            self.unheard.again(job_id, pause, self._clock())
            return
        if mutation.written is None:
            return  # gone, or taken up since: nothing to do
        self.announced += 1
        logger.warning(
            "job %s is still New %.0f s after it was created; announced it again (its "
            "job.created event may have been lost)",
            job_id,
            self._clock() - mutation.written.created_at,
        )
        self.unheard.again(job_id, pause, self._clock())
