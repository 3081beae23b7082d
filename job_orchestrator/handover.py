"""Hand a stopped replica's unheard-of jobs to a replica still running.

requeue.py announces again the jobs whose ``job.created`` may have been lost, but its table
lives in the process that created them: a replica that died (or stopped) with jobs in it took
those jobs' last chance of being announced again with it. So each replica that creates jobs
saves its table as a ledger (ledgers.py) every few seconds and as it stops, and looks at the
other replicas' ledgers: the jobs of a replica gone are taken over, each to be looked at when
its creator would have looked at it. Taking a ledger over is a compare-and-swap on it, so one
replica takes each; a replica wrongly thought gone (a long pause) saves its ledger again and
lists itself again, and its jobs are then looked at twice, which costs a read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from job_orchestrator.errors import StoreUnavailable
from job_orchestrator.ledgers import (
    CAPACITY,
    Ledger,
    Sightings,
    directory,
    directory_key,
    ledger_key,
    members,
    saved_before,
    unsaved_jobs,
    unsaved_query,
)
from job_orchestrator.store import Conflict, JobStore
from job_orchestrator.unheard import Unheard

logger = logging.getLogger(__name__)

#: A ledger unchanged for this many of its saves' intervals is a stopped replica's.
STALE_SAVES = 4
#: How long a spent ledger stays (for the logs of whoever looks), seconds.
SPENT_TTL_SECONDS = 3600
#: Tries at listing a stopping replica in a directory that other replicas change meanwhile.
CLOSING_ATTEMPTS = 3
#: Rows per query when looking for the jobs a gone replica created after its last save.
QUERY_PAGE = 100
#: A ledger to which jobs were added is saved again this soon (not waiting for save_every)...
QUICK_SAVE_SECONDS = 1.0
#: ... while it lists at most this many jobs (about 60 bytes each).
QUICK_SAVE_JOBS = 2_000


class Handover:
    """Saves this replica's ledger every ``save_every`` seconds and as it stops, and looks at
    the other replicas' ledgers every ``look_every`` seconds (``run``), taking over those of
    replicas gone."""

    def __init__(
        self,
        store: JobStore,
        unheard: Unheard,
        replica: str,
        topic: str,
        *,
        save_every: float,
        look_every: float,
        ttl_seconds: int,
        instance: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._unheard = unheard
        self._replica = replica
        self._directory = directory_key(topic)
        self._save_every = save_every
        self._look_every = look_every
        self._ttl = ttl_seconds
        self._clock = clock
        #: This process's ledger is jobunheard-<instance>; the jobs it creates carry it
        #: (``createdBy``), so that an heir finds those created after its last save.
        self.instance = instance or uuid.uuid4().hex[:12]
        self._sightings = Sightings(STALE_SAVES * save_every, STALE_SAVES)
        self._saved_added = 0  #: the table's ``added`` when the ledger was last saved
        self.adopted = 0  #: jobs taken over from replicas gone, so far

    async def run(self) -> None:
        """Save the ledger every ``save_every`` seconds, and within a second of a job being
        added while it is small; look around every ``look_every`` seconds. The first tick
        comes at once: a replica killed in its first seconds is listed, and seen gone."""
        looked = saved = -math.inf
        while True:
            now = self._clock()
            look = now - looked >= self._look_every
            if look or now - saved >= self._save_every or self._worth_saving():
                try:
                    await self.tick(look=look)
                except StoreUnavailable as exc:
                    logger.debug("handing over unheard-of jobs: %s", exc)
                saved = now
                if look:
                    looked = self._clock()
            await asyncio.sleep(min(QUICK_SAVE_SECONDS, self._save_every))

    def _worth_saving(self) -> bool:
        """Whether jobs were added since the last save, to a table small enough to save
        again so soon."""
        return self._unheard.added != self._saved_added and len(self._unheard) <= QUICK_SAVE_JOBS

    async def tick(self, *, look: bool = True) -> None:
        """Save the ledger (an empty one too: it says this replica is alive), then look at
        the other replicas' ledgers."""
        await self._save()
        if look:
            await self._look_around()

    async def close(self) -> None:
        """Save the ledger as stopped, so another replica takes its jobs at once, and make sure
        the directory lists it (a replica stopped before its first tick is not listed yet)."""
        try:
            await self._save(stopped=True)
            for _ in range(CLOSING_ATTEMPTS):
                listed, etag = await self._store.get_raw(self._directory)
                if await self._list(listed, etag, gone=[]):
                    break
        except StoreUnavailable as exc:
            logger.warning(
                "could not hand over %s unheard-of job(s) as this replica stops (another "
                "replica takes them once it sees the ledger unchanged): %s",
                len(self._unheard),
                exc,
            )

    async def _save(self, *, stopped: bool = False) -> None:
        now = self._clock()
        added = self._unheard.added
        jobs = tuple(self._unheard.waiting(CAPACITY))
        ledger = Ledger(self.instance, self._replica, now, self._save_every, jobs, stopped)
        await self._store.save_raw(ledger_key(self.instance), ledger.value(), ttl_seconds=self._ttl)
        self._saved_added = added

    async def _look_around(self) -> None:
        listed, etag = await self._store.get_raw(self._directory)
        instances = members(listed)
        others = [i for i in instances if i != self.instance]
        self._sightings.keep_only(others)
        found = await self._store.bulk_get([ledger_key(i) for i in others])
        now = self._clock()
        gone: list[str] = []
        for instance in others:
            ledger = Ledger.from_value(found.get(ledger_key(instance)))
            if ledger is None or ledger.adopted_by:
                gone.append(instance)  # expired, wiped, or taken over already
            elif self._sightings.orphaned(ledger, now) and await self._adopt(instance):
                gone.append(instance)
        if not await self._list(listed, etag, gone):
            logger.debug("the directory of ledgers changed meanwhile; next time")

    async def _list(self, listed: Any, etag: str, gone: list[str]) -> bool:
        """Make the directory (``listed``, as read with ``etag``) list this replica and not the
        ``gone`` ones; False when it changed since it was read."""
        instances = members(listed)
        if self.instance in instances and not gone:
            return True
        kept = [i for i in instances if i not in gone]
        try:
            await self._store.save_raw(
                self._directory,
                directory([*kept, self.instance]),
                etag=etag or None,
                ttl_seconds=self._ttl,  # a directory unchanged that long is listed again
                first_write=listed is None,
            )
        except Conflict:
            return False
        return True

    async def _adopt(self, instance: str) -> bool:
        """Take a gone replica's jobs over; False when another replica did, or it is back."""
        key = ledger_key(instance)
        value, etag = await self._store.get_raw(key)
        ledger = Ledger.from_value(value)
        if ledger is None or not etag or not self._sightings.orphaned(ledger, self._clock()):
            return ledger is None
        spent = ledger.spent(self.instance, self._clock())
        try:
            await self._store.save_raw(key, spent.value(), etag=etag, ttl_seconds=SPENT_TTL_SECONDS)
        except Conflict:
            return False
        taken = sum(self._unheard.adopt(job_id, look_at) for job_id, look_at in ledger.jobs)
        if self._store.query_api and not ledger.stopped:  # a stopped one was saved last
            taken += await self._adopt_unsaved(ledger)
        self.adopted += taken
        how = "stopped" if ledger.stopped else "is gone (its ledger has not changed lately)"
        logger.log(
            logging.WARNING if taken else logging.INFO,
            "replica %s %s: took over %s of its job(s) not yet heard taken up, to announce "
            "again any still New when it would have",
            ledger.replica,
            how,
            taken,
        )
        return True

    async def _adopt_unsaved(self, ledger: Ledger) -> int:
        """Take over the jobs the gone replica created after its ledger's last save, found by
        ``createdBy`` through the query API; how many were taken. Each is looked at
        ``JOB_REQUEUE_AFTER_SECONDS`` (this replica's) after its creation, as its creator would
        have, configured alike.

        Page tokens are offsets: jobs that leave New meanwhile (their queue message got
        through) shift the rows, and a row can slip into a page already read, so the rows are
        read twice. A store failure leaves the rest to the ledger's jobs alone, as before."""
        try:
            return await self._unsaved_pass(ledger) + await self._unsaved_pass(ledger)
        except StoreUnavailable as exc:
            logger.warning(
                "replica %s: could not look for the jobs it created after its ledger's last "
                "save: %s",
                ledger.replica,
                exc,
            )
            return 0

    async def _unsaved_pass(self, ledger: Ledger) -> int:
        """One read of the gone replica's New jobs, newest first, until the ledger covers the
        rest; how many were taken."""
        taken, token = 0, ""
        while True:
            page = await self._store.query(unsaved_query(ledger.instance, QUERY_PAGE, token))
            found = unsaved_jobs(page.values, ledger.instance)
            after = self._unheard.after
            taken += sum(self._unheard.adopt(job_id, at + after) for job_id, at in found)
            covered = any(saved_before(ledger, at) for _, at in found)
            full = len(self._unheard) >= self._unheard.capacity
            if covered or full or not page.token or len(page.values) < page.limit:
                return taken
            token = page.token
