"""The list of job ids GET /jobs walks, newest last, in one state key.

Every new job must be added before its first event is acknowledged, but one write per job would
make the key a hot spot; concurrent additions are group-committed (``dapr_support.batching``):
while one write is in flight the next ids queue up, and the following write takes them all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson

from dapr_support.batching import Batcher
from microservice_x.records import Change, Records, decode_list

logger = logging.getLogger(__name__)

INDEX_KEY = "jobs-index"
#: Newest job ids GET /jobs can list (about 40 bytes each); older views stay readable by id.
MAX_INDEX = 2_000


class JobIndex:
    def __init__(self, records: Records) -> None:
        self._records = records
        self._writes: Batcher[str, None] = Batcher(self._write, max_batch=MAX_INDEX)

    async def ids(self) -> list[str]:
        """Indexed job ids, newest first."""
        data, _ = await self._records.get(INDEX_KEY)
        return [str(i) for i in reversed(decode_list(INDEX_KEY, data))]

    async def add(self, job_id: str) -> None:
        """Return once ``job_id`` is stored in the index (StoreError if the write failed)."""
        await self._writes.submit(job_id)

    async def _write(self, job_ids: list[str]) -> Sequence[None]:
        logger.debug("adding %s job id(s) to the index in one write", len(job_ids))
        await self._records.update(INDEX_KEY, _adding(list(dict.fromkeys(job_ids))))
        return [None] * len(job_ids)

    async def close(self) -> None:
        """Let a write in flight finish (its callers are waiting for it)."""
        await self._writes.close()


def _adding(job_ids: list[str]) -> Change[None]:
    def change(current: bytes | None) -> tuple[bytes | None, None]:
        ids = decode_list(INDEX_KEY, current)
        present = set(ids)
        new = [job_id for job_id in job_ids if job_id not in present]
        if not new:
            return None, None
        return orjson.dumps((ids + new)[-MAX_INDEX:]), None

    return change
