"""The job index for GET /jobs on stores without the query API, kept through the state API: its
writing side (the keys and part format: index_keys.py; reading pages: index_pages.py).

Each replica writes its own part per minute: one writer per key, so no compare-and-swap, no
contention between replicas and one save per flush. A replica adds itself to the day's directory
once per minute with compare-and-swap. A part holds at most about ``segment_entries`` entries:
beyond that it seals them into a segment of its own and counts it, so a flush never rewrites more
than one segment's worth however busy the minute. Everything expires after the retention.

The store may lose the directory under a part still being written (a Redis restarted empty, a
failover that lost recent writes): the part would then be saved on where no reader looks. So a
replica reads its parts' names back from the directory every few seconds while it saves them, at
once after a failed store call and before it stops, and names them again if they are gone.

Entries are saved in the background, so a replica that dies right after accepting jobs would
take their entries with it. Each job therefore carries the number its creator gave it
(``indexedAs``), and each replica saves the highest number below which everything it gave out
is saved (``jobindex-mark-<instance>``). The queue brings every job to some replica: the one
that gets a job another replica created (to claim it, or to find it already canceled) checks
that mark a little later; when it has not passed the job's number in time, it indexes the job
itself (a duplicate entry, should the creator still save it, is dropped when read).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from job_orchestrator.index_keys import (
    Part,
    directory_key,
    mark_key,
    minute_of,
    part_key,
    segment_key,
)
from job_orchestrator.index_pages import MAX_ENTRIES_PER_PAGE, MAX_JOB_READS_PER_PAGE, IndexPages
from job_orchestrator.index_scan import Entry, bounds_of
from job_orchestrator.jobs import Job, iso, parse_iso
from job_orchestrator.listing import Page
from job_orchestrator.store import Conflict, JobStore

logger = logging.getLogger(__name__)

#: Entries a part holds before it seals them into a segment (about 70 bytes each).
SEGMENT_ENTRIES = 1000
#: Seconds a part is saved on between reads of the directory confirming it is named there.
CONFIRM_AFTER_SECONDS = 5.0
#: Flush intervals after a claim before checking that the job's creator indexed it.
CHECK_AFTER_FLUSHES = 2
#: A creator whose mark has not passed a job this long after its claim (or ten flush intervals,
#: if longer) is taken to have stopped, and the claiming replica indexes the job.
STOPPED_AFTER_SECONDS = 10.0


def entry_of(job: Job) -> Entry:
    """``[createdAt, id, owner]``, createdAt as stored (milliseconds): the creator's entry and
    one recovered from the stored job are the same, and sort the way the listing shows them."""
    return [parse_iso(iso(job.created_at)), job.id, job.owner]


def read_ref(ref: str | None) -> tuple[str, int] | None:
    """``(instance, number)`` from a job's ``indexedAs``; None when absent or malformed."""
    instance, _, number = (ref or "").rpartition(":")
    return (instance, int(number)) if instance and number.isdigit() else None


def mark_after(last: int, unsaved: set[int]) -> int:
    """The highest number below which every number given out (up to ``last``) is saved."""
    return min(unsaved) - 1 if unsaved else last


@dataclass(slots=True)
class Pending:
    """What waits for the next flush into one minute's part: its entries, and the numbers
    this process gave out among them (saved: the mark may pass them)."""

    entries: list[Entry] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)

    def extend(self, other: Pending) -> None:
        self.entries.extend(other.entries)
        self.numbers.extend(other.numbers)


@dataclass(slots=True)
class Claimed:
    """A job another replica created, claimed here: is it in its creator's part yet?"""

    since: float  #: monotonic time of the claim
    instance: str
    number: int
    entry: list[Any]


def sort_claims(
    claims: list[Claimed], marks: dict[str, int], now: float, stopped_after: float
) -> tuple[list[Claimed], list[Claimed]]:
    """(still waiting, orphaned) claims, given the marks read for some creators: a claim whose
    creator's mark passed its number is done; one unpassed ``stopped_after`` is an orphan."""
    waiting: list[Claimed] = []
    orphans: list[Claimed] = []
    for claim in claims:
        mark = marks.get(claim.instance)
        if mark is not None and mark >= claim.number:
            continue
        if mark is not None and now - claim.since >= stopped_after:
            orphans.append(claim)
        else:
            waiting.append(claim)
    return waiting, orphans


class JobIndex:
    def __init__(
        self,
        store: JobStore,
        retention_seconds: int,
        flush_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        segment_entries: int = SEGMENT_ENTRIES,
        max_entries: int = MAX_ENTRIES_PER_PAGE,
        max_job_reads: int = MAX_JOB_READS_PER_PAGE,
    ) -> None:
        self._store = store
        self._pages = IndexPages(store, retention_seconds // 86400 + 1, max_entries, max_job_reads)
        self._ttl = retention_seconds + 86400
        self._flush_seconds = flush_seconds
        self._monotonic = monotonic
        self._segment_entries = segment_entries
        #: Names this process's parts: unique per process, even when a pod keeps its name.
        self.instance = uuid.uuid4().hex[:12]
        self._pending: dict[tuple[str, str], Pending] = defaultdict(Pending)
        #: This process's recent parts as last saved (each save rewrites the open entries).
        self._parts: dict[tuple[str, str], Part] = {}
        self._given = 0  #: the last number given out
        self._unsaved: set[int] = set()  #: numbers given out whose entries are not saved yet
        self._saved_mark = 0
        self._claimed: list[Claimed] = []
        #: When each part was last found (or put) in its directory, and the parts saved since.
        self._confirmed: dict[tuple[str, str], float] = {}
        self._unconfirmed: set[tuple[str, str]] = set()
        #: The store's failed calls when last looked at: more mean it may have come back empty.
        self._failures_seen = store.failed_calls
        self._stopping = False

    def reserve(self) -> str:
        """The ``indexedAs`` of a job about to be created here; ``add`` it once written."""
        self._given += 1
        self._unsaved.add(self._given)
        return f"{self.instance}:{self._given}"

    def add(self, job: Job) -> None:
        """Queue a job created here for the next flush (written or not: a failed write's entry
        is skipped when read, and a write that failed late may have stored the job after all)."""
        pending = self._pending[minute_of(job.created_at)]
        pending.entries.append(entry_of(job))
        ref = read_ref(job.indexed_as)
        if ref is not None and ref[0] == self.instance:
            pending.numbers.append(ref[1])

    def delivered(self, job: Job) -> None:
        """The queue brought a job here: check later that the replica that created it indexed
        it (a job canceled while New is never claimed, but it is delivered)."""
        ref = read_ref(job.indexed_as)
        if ref is not None and ref[0] != self.instance:
            self._claimed.append(Claimed(self._monotonic(), ref[0], ref[1], entry_of(job)))

    async def flush(self) -> None:
        if self._store.failed_calls != self._failures_seen:
            # The store failed calls: it may have come back empty. Confirm what is saved next.
            self._failures_seen = self._store.failed_calls
            self._confirmed.clear()
        pending, self._pending = self._pending, defaultdict(Pending)
        failed = False
        for day, minute in sorted(pending):
            batch = pending[(day, minute)]
            try:
                await self._save(day, minute, batch.entries)
            except Exception:
                logger.exception(
                    "could not index %s jobs; retrying at the next flush", len(batch.entries)
                )
                self._pending[(day, minute)].extend(batch)
                failed = True
                continue
            self._unsaved.difference_update(batch.numbers)
        # Only the current minute or so still gets entries; forget older parts once confirmed
        # (while the store fails, at the first flush after it answers again).
        stale = set(sorted(self._parts)[:-2])
        due = [] if failed else self._due(stale)
        for day in sorted({day for day, _ in due}):
            try:
                await self._confirm(day, [minute for d, minute in due if d == day])
            except Exception as exc:  # confirmed at the next flush
                logger.warning("could not confirm the index parts of %s: %s", day, exc)
        for key in stale - self._unconfirmed:
            del self._parts[key]
            self._confirmed.pop(key, None)
        await self._save_mark()

    def _due(self, stale: Collection[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """The parts saved since their names were last confirmed whose turn has come."""
        now = self._monotonic()
        return sorted(
            key
            for key in self._unconfirmed
            if self._stopping
            or key in stale
            or now - self._confirmed.get(key, -math.inf) >= CONFIRM_AFTER_SECONDS
        )

    async def _save_mark(self) -> None:
        mark = mark_after(self._given, self._unsaved)
        if mark <= self._saved_mark:
            return
        try:
            await self._store.save_raw(
                mark_key(self.instance), {"number": mark}, ttl_seconds=self._ttl
            )
            self._saved_mark = mark
        except Exception as exc:  # saved again at the next flush
            logger.warning("could not save the index mark: %s", exc)

    async def _save(self, day: str, minute: str, entries: list[Entry]) -> None:
        key = part_key(day, minute, self.instance)
        part = self._parts.get((day, minute))
        if part is None:
            # Named in the directory before the part exists: a reader may find the name without
            # the part (skipped), never a part it cannot find. The same read confirms this
            # day's other parts saved since their last confirmation.
            waiting = [m for d, m in sorted(self._unconfirmed) if d == day]
            await self._confirm(day, [minute, *waiting])
            # A part this process wrote before and forgot (an older minute indexed late).
            current, _ = await self._store.get_raw(key)
            part = Part.read(current, day, minute)
        else:
            self._unconfirmed.add((day, minute))
        if len(part.entries) >= self._segment_entries:
            # Sealed before the part counts it: a crash in between leaves the entries in both
            # (dropped as duplicates when read), never in neither.
            await self._store.save_raw(
                segment_key(key, len(part.bounds)), {"jobs": part.entries}, ttl_seconds=self._ttl
            )
            part = Part([], [*part.bounds, bounds_of(part.entries)])
        saved = Part(part.entries + entries, part.bounds)
        await self._store.save_raw(key, saved.value(), ttl_seconds=self._ttl)
        self._parts[(day, minute)] = saved

    async def _confirm(self, day: str, minutes: list[str]) -> None:
        """Name this process's parts of ``minutes`` in the day's directory where they are not.

        A part already saved that is missing there was lost with the directory (the store came
        back empty, or without its last writes): it is saved again as this process last saved
        it before its name is (a crash in between leaves it unnamed, as it was), and the mark is
        saved again at the end of the flush.
        """
        key = directory_key(day)
        restored: set[str] = set()
        for _ in range(16):
            read_at = self._monotonic()
            current, etag = await self._store.get_raw(key)
            parts = (current or {}).get("parts", [])
            missing = [m for m in minutes if [m, self.instance] not in parts]
            for minute in missing:
                part = self._parts.get((day, minute))
                if part is not None and minute not in restored:
                    logger.warning("index part %s %s was lost; saving it again", day, minute)
                    await self._store.save_raw(
                        part_key(day, minute, self.instance), part.value(), ttl_seconds=self._ttl
                    )
                    restored.add(minute)
                    self._saved_mark = 0
            try:
                if missing:
                    await self._store.save_raw(
                        key,
                        {"parts": [*parts, *([m, self.instance] for m in missing)]},
                        etag=etag or None,
                        first_write=not etag,
                        ttl_seconds=self._ttl,
                    )
            except Conflict:
                continue
            for minute in minutes:
                self._confirmed[(day, minute)] = read_at
                self._unconfirmed.discard((day, minute))
            return
        raise Conflict(key)

    async def check_claimed(self) -> None:
        """Index the claimed jobs whose creators' marks have not passed them in time."""
        now = self._monotonic()
        check_after = CHECK_AFTER_FLUSHES * self._flush_seconds
        due = {c.instance for c in self._claimed if now - c.since >= check_after}
        if not due:
            return
        found = await self._store.bulk_get([mark_key(i) for i in sorted(due)])
        marks = {i: int(found.get(mark_key(i), {}).get("number", 0)) for i in due}
        stopped_after = max(STOPPED_AFTER_SECONDS, 10 * self._flush_seconds)
        self._claimed, orphans = sort_claims(self._claimed, marks, now, stopped_after)
        for claim in orphans:
            logger.info(
                "job %s: its creator %s did not index it; indexing it here",
                claim.entry[1],
                claim.instance,
            )
            self._pending[minute_of(claim.entry[0])].entries.append(claim.entry)

    async def run(self) -> None:
        """Check claims and flush forever (a lifespan background task)."""
        try:
            while True:
                await asyncio.sleep(self._flush_seconds)
                try:
                    await self.check_claimed()
                except Exception as exc:  # checked again at the next flush
                    logger.warning("could not check claimed jobs' index entries: %s", exc)
                marked = self._saved_mark >= mark_after(self._given, self._unsaved)
                if self._pending or not marked or self._due():
                    await self.flush()
        finally:
            # Cancelled as the process stops: the lifespan's flush that follows is the last,
            # so it confirms every part saved since its last confirmation, however recently.
            self._stopping = True

    async def page(
        self, owner: str | None, status: str | None, limit: int, cursor: str | None, now: float
    ) -> Page:
        """Newest first; the cursor is the last job returned (see ``IndexPages.page``)."""
        return await self._pages.page(owner, status, limit, cursor, now)
