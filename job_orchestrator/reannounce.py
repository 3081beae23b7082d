"""Announce again the final events a state-store outage may have cost, so none is lost for good.

The outbox publishes a job's event through a relay that first reads the transaction's marker
from the state store; daprd's relay (and the sidecar's, on another replica) gives the event up
when that read fails for about 10 s, and the broker acknowledges it. The job is then final in
the store while no subscriber ever hears so. The replica that wrote the final knows when the
store failed around then (at_risk.py): once the store answers again it saves each such job
again, unchanged, over its etag, and the outbox publishes the same event (same ``sequence``) a
second time. Subscribers see a duplicate where the first one got through. ``job.created`` has
its own safety net (requeue.py); the updates in between are superseded by the final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from job_orchestrator.at_risk import AtRisk
from job_orchestrator.errors import StoreUnavailable
from job_orchestrator.jobs import Job
from job_orchestrator.store import JobStore

logger = logging.getLogger(__name__)

#: How often suspects are looked at, and the longest the store goes unasked while finals wait
#: for their window to pass (an idle replica reads PROBE_KEY to learn the store's health).
TICK_SECONDS = 1.0
#: Jobs announced again concurrently (their reads and writes share the store's batched calls).
AT_ONCE = 64
#: A key no job has: reading it tells whether the store answers.
PROBE_KEY = "store-probe"


def still_final(job: Job) -> Job | None:
    """The job to save again, unchanged, when it is final; else None (its final is not
    written yet: the write that failed is retried by its worker, and announced then)."""
    return job if job.is_final else None


class Reannounce:
    """Watches the store while finals are at risk; announces the suspects again."""

    def __init__(
        self, store: JobStore, at_risk: AtRisk, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._at_risk = at_risk
        self._clock = clock
        self.announced = 0  #: final events published again so far

    async def run(self) -> None:
        calls = self._store.calls
        while True:
            await asyncio.sleep(TICK_SECONDS)
            if self._store.calls == calls and self._at_risk.watching(self._clock()):
                await self.probe()
            calls = self._store.calls
            await self.sweep()

    async def probe(self) -> None:
        """Ask the store something; a failure is noted by the store itself (at_risk.failed)."""
        with contextlib.suppress(StoreUnavailable):
            await self._store.get_raw(PROBE_KEY)

    async def sweep(self) -> None:
        """Announce the suspects again, ``AT_ONCE`` at a time, until the store fails one."""
        announced = self.announced
        while batch := self._at_risk.take(AT_ONCE):
            done = await asyncio.gather(*(self._announce(job_id) for job_id in batch))
            failed = [job_id for job_id, ok in zip(batch, done, strict=True) if not ok]
            for job_id in failed:
                self._at_risk.unsure(job_id)
            if failed:
                break  # the store is still failing: next tick
        if self.announced > announced:
            logger.warning(
                "announced %s final event(s) again: the state store failed soon after they "
                "were written, so the outbox relay may have given them up",
                self.announced - announced,
            )

    async def _announce(self, job_id: str) -> bool:
        try:
            mutation = await self._store.mutate(job_id, still_final)
        except StoreUnavailable as exc:
            logger.debug("job %s: could not announce its final again yet: %s", job_id, exc)
            return False
        if mutation.written is not None:
            self.announced += 1
        return True
