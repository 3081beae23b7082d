"""The job index for GET /jobs on stores without the query API, kept through the state API.

Each replica writes its own part per minute (``jobindex-<day>-<HHMM>-<instance>``): one writer per
key, so no compare-and-swap, no contention between replicas and one save per flush. A per-day
directory (``jobindex-<day>``) names the parts; a replica adds itself once per minute with
compare-and-swap. Parts stay small (one minute of one replica) and expire after the retention.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from job_orchestrator.jobs import Job
from job_orchestrator.listing import Page, after, decode_cursor, encode_cursor, newer_first
from job_orchestrator.store import Conflict, JobStore, job_key

logger = logging.getLogger(__name__)

#: Minutes of parts read per bulk call while listing.
MINUTES_PER_READ = 10
#: Jobs read per bulk call while listing.
JOBS_PER_READ = 100


def minute_of(ts: float) -> tuple[str, str]:
    """(day ``YYYYMMDD``, minute ``HHMM``) of a timestamp, UTC."""
    stamp = datetime.fromtimestamp(ts, UTC)
    return stamp.strftime("%Y%m%d"), stamp.strftime("%H%M")


def directory_key(day: str) -> str:
    return f"jobindex-{day}"


def part_key(day: str, minute: str, instance: str) -> str:
    return f"jobindex-{day}-{minute}-{instance}"


class JobIndex:
    def __init__(self, store: JobStore, retention_seconds: int) -> None:
        self._store = store
        self._days = retention_seconds // 86400 + 1
        self._ttl = retention_seconds + 86400
        #: Names this process's parts: unique per process, even when a pod keeps its name.
        self._instance = uuid.uuid4().hex[:12]
        self._pending: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
        #: Entries already saved in this process's recent parts (each save rewrites its part).
        self._parts: dict[tuple[str, str], list[list[Any]]] = {}

    def add(self, job: Job) -> None:
        """Queue a new job for the next flush."""
        self._pending[minute_of(job.created_at)].append([job.created_at, job.id, job.owner])

    async def flush(self) -> None:
        pending, self._pending = self._pending, defaultdict(list)
        for (day, minute), entries in sorted(pending.items()):
            try:
                await self._save(day, minute, entries)
            except Exception:
                logger.exception(
                    "could not index %s jobs; retrying at the next flush", len(entries)
                )
                self._pending[(day, minute)].extend(entries)
        # Only the current minute or so still gets entries; forget older parts.
        for stale in sorted(self._parts)[:-2]:
            del self._parts[stale]

    async def _save(self, day: str, minute: str, entries: list[list[Any]]) -> None:
        saved = self._parts.get((day, minute))
        if saved is None:
            # Listed in the directory before the part exists: a reader may find the name
            # without the part (skipped), never a part it cannot find.
            await self._register(day, minute)
            saved = []
        merged = saved + entries
        key = part_key(day, minute, self._instance)
        await self._store.save_raw(key, {"jobs": merged}, ttl_seconds=self._ttl)
        self._parts[(day, minute)] = merged

    async def _register(self, day: str, minute: str) -> None:
        key = directory_key(day)
        for _ in range(16):
            current, etag = await self._store.get_raw(key)
            parts = (current or {}).get("parts", [])
            if [minute, self._instance] in parts:
                return
            try:
                await self._store.save_raw(
                    key,
                    {"parts": [*parts, [minute, self._instance]]},
                    etag=etag or None,
                    first_write=not etag,
                    ttl_seconds=self._ttl,
                )
                return
            except Conflict:
                continue
        raise Conflict(key)

    async def run(self, interval: float) -> None:
        """Flush forever (a lifespan background task)."""
        while True:
            await asyncio.sleep(interval)
            if self._pending:
                await self.flush()

    async def page(
        self, owner: str | None, status: str | None, limit: int, cursor: str | None, now: float
    ) -> Page:
        """Newest first; the cursor is the last job returned (``[createdAt, id]``)."""
        position = decode_cursor(cursor).get("after") if cursor else None
        start = datetime.fromtimestamp(float(position[0]) if position else now, UTC)
        last_minute = start.strftime("%H%M")
        items: list[dict[str, Any]] = []
        for back in range(self._days):
            day = (start - timedelta(days=back)).strftime("%Y%m%d")
            directory, _ = await self._store.get_raw(directory_key(day))
            parts: list[list[str]] = (directory or {}).get("parts", [])
            minutes = sorted({m for m, _ in parts}, reverse=True)
            if back == 0:
                minutes = [m for m in minutes if m <= last_minute]
            for first in range(0, len(minutes), MINUTES_PER_READ):
                chosen = set(minutes[first : first + MINUTES_PER_READ])
                keys = [part_key(day, m, inst) for m, inst in parts if m in chosen]
                found = await self._store.bulk_get(keys)
                entries = newer_first([e for v in found.values() for e in v.get("jobs", [])])
                entries = after(entries, position)
                if owner:
                    entries = [e for e in entries if e[2] == owner]
                async for entry, job in self._jobs(entries, status):
                    items.append(job)
                    if len(items) == limit:
                        return Page(items, encode_cursor({"after": entry[:2]}))
        return Page(items, None)

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
