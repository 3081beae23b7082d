"""GET /jobs pages read from the job index (the index's reading side; index.py writes it).

A page walks the days' directories newest first, reads the parts a span of minutes at a time,
and reads the jobs behind the entries in bulk; it examines and reads a bounded amount per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from job_orchestrator.index_keys import Part, directory_key, part_key, segment_key
from job_orchestrator.index_scan import Entry, Scan
from job_orchestrator.jobs import Job
from job_orchestrator.listing import Page, decode_position, encode_cursor
from job_orchestrator.store import JobStore, job_key

#: Minutes of parts read per bulk call while listing, at most: a page starts with one minute
#: (a busy minute alone can fill it) and doubles the span while it finds too few jobs.
MINUTES_PER_READ = 16
#: Jobs read per bulk call while listing.
JOBS_PER_READ = 100
#: Index entries one page examines at most (about 70 bytes each), and jobs it reads at most:
#: a filter that matches little answers a short page with a cursor instead of reading on.
MAX_ENTRIES_PER_PAGE = 10_000
MAX_JOB_READS_PER_PAGE = 1_000


def spans(minutes: list[str], widest: int) -> Iterator[set[str]]:
    """``minutes`` in consecutive groups of 1, 2, 4, ... up to ``widest`` each."""
    first, width = 0, 1
    while first < len(minutes):
        yield set(minutes[first : first + width])
        first, width = first + width, min(width * 2, widest)


class IndexPages:
    """Pages of jobs from the index kept in ``store``, back through ``days`` days."""

    def __init__(self, store: JobStore, days: int, max_entries: int, max_job_reads: int) -> None:
        self._store = store
        self._days = days
        self._max_entries = max_entries
        self._max_job_reads = max_job_reads

    async def page(
        self, owner: str | None, status: str | None, limit: int, cursor: str | None, now: float
    ) -> Page:
        """Newest first; the cursor is the last job returned (``[createdAt, id]``).

        A page examines at most ``max_entries`` index entries and reads at most
        ``max_job_reads`` jobs, so a filter that matches little costs a bounded amount per
        request: a page that runs out first holds fewer than ``limit`` jobs (maybe none) and
        the cursor of the last entry it examined.
        """
        position = decode_position(cursor) if cursor else None
        start = datetime.fromtimestamp(float(position[0]) if position else now, UTC)
        items: list[dict[str, Any]] = []
        batch: list[list[Any]] = []  #: entries whose jobs are read next, in one bulk call
        examined = job_reads = 0
        entries = self._entries(start, position)
        while True:
            entry = await anext(entries, None)
            spent = False
            if entry is not None:
                examined += 1
                if not owner or entry[2] == owner:
                    batch.append(entry)
                spent = (
                    examined >= self._max_entries or job_reads + len(batch) >= self._max_job_reads
                )
                if not spent and len(batch) < (JOBS_PER_READ if status else limit - len(items)):
                    continue
            job_reads += len(batch)
            async for listed, job in self._jobs(batch, status):
                items.append(job)
                if len(items) == limit:
                    return Page(items, encode_cursor({"after": listed[:2]}))
            batch = []
            if entry is None:
                return Page(items, None)
            if spent:
                return Page(items, encode_cursor({"after": entry[:2]}))

    async def _entries(self, start: datetime, position: list[Any] | None) -> AsyncIterator[Entry]:
        """Every index entry after ``position``, newest first, from ``start``'s minute back
        through the retention. A minute's entries are all newer than an earlier minute's."""
        last_minute = start.strftime("%H%M")
        for back in range(self._days):
            day = (start - timedelta(days=back)).strftime("%Y%m%d")
            directory, _ = await self._store.get_raw(directory_key(day))
            parts: list[list[str]] = (directory or {}).get("parts", [])
            minutes = sorted({m for m, _ in parts}, reverse=True)
            if back == 0:
                minutes = [m for m in minutes if m <= last_minute]
            for chosen in spans(minutes, MINUTES_PER_READ):
                minute_of_key = {part_key(day, m, i): m for m, i in parts if m in chosen}
                scan = Scan(position)
                for key, value in (await self._store.bulk_get(list(minute_of_key))).items():
                    part = Part.read(value, day, minute_of_key[key])
                    scan.add(part.entries)
                    for n, (oldest, newest) in enumerate(part.bounds):
                        scan.add_segment(segment_key(key, n), oldest, newest)
                while True:
                    wanted = scan.wanted()
                    if wanted:
                        found = await self._store.bulk_get(wanted)
                        for key in wanted:
                            scan.add(found.get(key, {}).get("jobs", []))
                        continue
                    entry = scan.next()
                    if entry is None:
                        break
                    yield entry

    async def _jobs(
        self, entries: list[list[Any]], status: str | None
    ) -> AsyncIterator[tuple[list[Any], dict[str, Any]]]:
        """The live jobs behind index entries, in order (deleted or expired ones skipped)."""
        for first in range(0, len(entries), JOBS_PER_READ):
            chunk = entries[first : first + JOBS_PER_READ]
            found = await self._store.bulk_get([job_key(e[1]) for e in chunk])
            for entry in chunk:
                record = found.get(job_key(entry[1]))
                if record is None or record.get("kind") != "job":
                    continue
                if status and record.get("status") != status:
                    continue
                yield entry, Job.from_record(record).public()
