"""GET /jobs on every state store: the query API where the store has it, else a sharded index.

The index lives in the state store as day buckets split into shards (``jobindex-YYYYMMDD-N``),
so submissions spread over many keys instead of funnelling through one. Each replica batches its
new jobs and appends them per shard with compare-and-swap, off the request path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from job_orchestrator.errors import OrchestratorError
from job_orchestrator.jobs import Job
from job_orchestrator.store import Conflict, JobStore, job_key

logger = logging.getLogger(__name__)


class BadCursor(OrchestratorError):
    status = 422
    title = "Invalid cursor"


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        raise BadCursor("cursor: not a cursor this API returned") from None
    if not isinstance(data, dict):
        raise BadCursor("cursor: not a cursor this API returned")
    return data


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d")


def shard_of(job_id: str, shards: int) -> int:
    return zlib.crc32(job_id.encode()) % shards


def index_key(day: str, shard: int) -> str:
    return f"jobindex-{day}-{shard}"


def query_for(
    owner: str | None, status: str | None, limit: int, token: str | None
) -> dict[str, Any]:
    """A Dapr state query for one page of jobs, newest first."""
    conditions: list[dict[str, Any]] = [{"EQ": {"kind": "job"}}]
    if owner:
        conditions.append({"EQ": {"owner": owner}})
    if status:
        conditions.append({"EQ": {"status": status}})
    page: dict[str, Any] = {"limit": limit}
    if token:
        page["token"] = token
    return {
        "filter": conditions[0] if len(conditions) == 1 else {"AND": conditions},
        "sort": [{"key": "createdAt", "order": "DESC"}],
        "page": page,
    }


def newer_first(entries: list[list[Any]]) -> list[list[Any]]:
    """Index entries ``[createdAt, id, owner]`` sorted newest first, duplicates dropped."""
    unique = {e[1]: e for e in entries}
    return sorted(unique.values(), key=lambda e: (-float(e[0]), str(e[1])))


def after(entries: list[list[Any]], position: list[Any] | None) -> list[list[Any]]:
    """The entries strictly after ``position`` (``[createdAt, id]``) in newest-first order."""
    if position is None:
        return entries
    mark = (-float(position[0]), str(position[1]))
    return [e for e in entries if (-float(e[0]), str(e[1])) > mark]


class JobIndex:
    """The sharded day index, for stores without the query API."""

    def __init__(self, store: JobStore, shards: int, retention_seconds: int) -> None:
        self._store = store
        self._shards = shards
        self._days = retention_seconds // 86400 + 1
        self._ttl = retention_seconds + 2 * 86400
        self._pending: dict[str, list[list[Any]]] = defaultdict(list)

    def add(self, job: Job) -> None:
        """Queue a new job for the next flush."""
        key = index_key(day_of(job.created_at), shard_of(job.id, self._shards))
        self._pending[key].append([job.created_at, job.id, job.owner])

    async def flush(self) -> None:
        pending, self._pending = self._pending, defaultdict(list)
        for key, entries in pending.items():
            try:
                await self._append(key, entries)
            except Exception:
                logger.exception("could not add %s jobs to %s; retrying later", len(entries), key)
                self._pending[key].extend(entries)

    async def _append(self, key: str, entries: list[list[Any]]) -> None:
        for _ in range(16):
            current, etag = await self._store.get_raw(key)
            merged = (current or {}).get("jobs", []) + entries
            try:
                await self._store.save_raw(
                    key,
                    {"jobs": merged},
                    etag=etag or None,
                    ttl_seconds=self._ttl,
                    first_write=not etag,
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
        state = decode_cursor(cursor) if cursor else {}
        start = datetime.strptime(state.get("day", day_of(now)), "%Y%m%d").replace(tzinfo=UTC)
        position = state.get("after")
        items: list[dict[str, Any]] = []
        for back in range(self._days):
            day = (start - timedelta(days=back)).strftime("%Y%m%d")
            keys = [index_key(day, s) for s in range(self._shards)]
            shards = await self._store.bulk_get(keys)
            entries = newer_first([e for v in shards.values() for e in v.get("jobs", [])])
            entries = after(entries, position if back == 0 else None)
            if owner:
                entries = [e for e in entries if e[2] == owner]
            for start_at in range(0, len(entries), 100):
                chunk = entries[start_at : start_at + 100]
                found = await self._store.bulk_get([job_key(e[1]) for e in chunk])
                for entry in chunk:
                    record = found.get(job_key(entry[1]))
                    if record is None or record.get("kind") != "job":
                        continue
                    if status and record.get("status") != status:
                        continue
                    items.append(Job.from_record(record).public())
                    if len(items) == limit:
                        next_cursor = encode_cursor({"day": day, "after": entry[:2]})
                        return Page(items, next_cursor)
        return Page(items, None)


class QueryListing:
    """Listing through the state store's query API (e.g. state.postgresql)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def page(
        self, owner: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page:
        token = decode_cursor(cursor).get("token") if cursor else None
        values, next_token = await self._store.query(query_for(owner, status, limit, token))
        items = [Job.from_record(v).public() for v in values]
        next_cursor = encode_cursor({"token": next_token}) if next_token and items else None
        return Page(items, next_cursor)
