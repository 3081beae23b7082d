"""The list of job ids GET /jobs walks, kept in segments of the state store.

Ids are appended, newest last, to the head key (``jobs-index``: its segment number and ids). A
full head is sealed: its ids are saved as ``jobs-index-<n>`` and the head starts segment n + 1
with the ids being added, so no key grows without bound and a page reads only the segments it
walks. Sealing saves the segment before the head moves on; a writer that dies in between leaves
a segment that the next writer saves again with the same ids (nothing else changes a full head).

Every new job must be added before its first event is acknowledged, but one write per job would
make the head a hot spot; concurrent additions are group-committed (``dapr_support.batching``):
while one write is in flight the next ids queue up, and the following write takes them all.

A sealed segment expires with the views' retention, counted from when it was sealed, so a job is
listed for at least that long after it was first seen. The head never expires.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

import orjson

from dapr_support.batching import Batcher
from dapr_support.etags import counted_after
from microservice_x.errors import CorruptRecord, StoreError
from microservice_x.records import MAX_CAS_ATTEMPTS, Records, decode_list

logger = logging.getLogger(__name__)

INDEX_KEY = "jobs-index"
#: Ids per sealed segment (about 40 bytes each).
SEGMENT_SIZE = 1_000
#: A page cursor: the position of the last job of the page, "<segment>.<offset>".
_CURSOR = r"([0-9]{1,9})\.([0-9]{1,6})"
CURSOR_PATTERN = f"^{_CURSOR}$"


def segment_key(number: int) -> str:
    return f"{INDEX_KEY}-{number}"


@dataclass(frozen=True, slots=True)
class Position:
    """Where an id sits in the index: its segment and its offset there (0: the oldest)."""

    segment: int
    offset: int

    def cursor(self) -> str:
        return f"{self.segment}.{self.offset}"

    @classmethod
    def parse(cls, cursor: str) -> Position | None:
        """The position a cursor names; None if it names none."""
        match = re.fullmatch(_CURSOR, cursor)
        return None if match is None else cls(int(match[1]), int(match[2]))


@dataclass(frozen=True, slots=True)
class Head:
    segment: int
    ids: list[str]

    @classmethod
    def decode(cls, data: bytes | None) -> Head:
        if data is None:
            return cls(0, [])
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CorruptRecord(f"stored record {INDEX_KEY!r} is not JSON: {exc}") from exc
        if isinstance(value, list):  # the single-key index of earlier versions
            return cls(0, [str(i) for i in value])
        match value:
            case {"segment": int(segment), "ids": list(ids)} if segment >= 0:
                return cls(segment, [str(i) for i in ids])
        raise CorruptRecord(f"stored record {INDEX_KEY!r} is not a job index head")

    def encode(self) -> bytes:
        return orjson.dumps({"segment": self.segment, "ids": self.ids})


class JobIndex:
    def __init__(
        self,
        records: Records,
        segment_ttl_seconds: int | None = None,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        self._records = records
        self._segment_ttl = segment_ttl_seconds
        self._segment_size = segment_size
        self._writes: Batcher[str, None] = Batcher(self._write, max_batch=segment_size)
        #: True when the store's etags count writes (state.redis: "1", +1 per write), so the
        #: head this process last wrote, and its etag, are known without reading them back.
        self.counted_etags = False
        #: The head as last written here, with its etag then; the next write goes over it
        #: unread (when another writer changed it since, the write loses and reads).
        self._known: tuple[bytes, str] | None = None

    async def add(self, job_id: str) -> None:
        """Return once ``job_id`` is stored in the index (StoreError if the write failed)."""
        await self._writes.submit(job_id)

    async def walk(self, after: Position | None = None) -> AsyncGenerator[tuple[Position, str]]:
        """Indexed ids with their positions, newest first, from just before ``after``.

        Ends at the oldest segment still stored; a position in no segment yet yields nothing.
        """
        data, _ = await self._records.get(INDEX_KEY)
        head = Head.decode(data)
        if after is not None and after.segment > head.segment:
            return
        segment, ids = head.segment, head.ids
        start = len(ids)
        if after is not None and after.segment < head.segment:
            segment = after.segment
            ids = await self._sealed(segment)
            start = min(after.offset, len(ids))
        elif after is not None and after.segment == head.segment:
            start = min(after.offset, len(ids))
        while True:
            for offset in range(start - 1, -1, -1):
                yield Position(segment, offset), ids[offset]
            if segment == 0:
                return
            segment -= 1
            ids = await self._sealed(segment)
            if not ids:
                return
            start = len(ids)

    async def _sealed(self, number: int) -> list[str]:
        key = segment_key(number)
        data, _ = await self._records.get(key)
        return [str(i) for i in decode_list(key, data)]

    async def _write(self, job_ids: list[str]) -> Sequence[None]:
        logger.debug("adding %s job id(s) to the index in one write", len(job_ids))
        adding = list(dict.fromkeys(job_ids))
        known, self._known = self._known, None
        for attempt in range(1, MAX_CAS_ATTEMPTS + 1):
            data, etag = known if known is not None else await self._records.get(INDEX_KEY)
            known = None
            head = Head.decode(data)
            present = set(head.ids)
            new = [job_id for job_id in adding if job_id not in present]
            if not new:
                self._remember(data, etag)
                break
            if len(head.ids) >= self._segment_size:
                await self._records.put(
                    segment_key(head.segment), orjson.dumps(head.ids), self._segment_ttl
                )
                head = Head(head.segment + 1, [])
            updated = Head(head.segment, head.ids + new).encode()
            if await self._records.compare_and_set(INDEX_KEY, updated, etag):
                self._remember(updated, counted_after(etag) if self.counted_etags else None)
                break
            logger.debug("index head changed under us (attempt %s), re-reading", attempt)
        else:
            raise StoreError(f"{INDEX_KEY!r} kept changing under {MAX_CAS_ATTEMPTS} attempts")
        return [None] * len(job_ids)

    def _remember(self, data: bytes | None, etag: str | None) -> None:
        if self.counted_etags and data is not None and etag is not None:
            self._known = (data, etag)

    async def close(self) -> None:
        """Let a write in flight finish (its callers are waiting for it)."""
        await self._writes.close()
