"""The list of job ids GET /jobs walks, newest last, in one state key.

Every new job must be added before its first event is acknowledged, but one write per job would
make the key a hot spot; concurrent additions are group-committed: while one write is in flight
the next ids queue up, and the following write takes them all.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from microservice_x.records import Change, Records, decode_list

logger = logging.getLogger(__name__)

INDEX_KEY = "jobs-index"
#: Newest job ids GET /jobs can list (about 40 bytes each); older views stay readable by id.
MAX_INDEX = 2_000


class JobIndex:
    def __init__(self, records: Records) -> None:
        self._records = records
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def ids(self) -> list[str]:
        """Indexed job ids, newest first."""
        data, _ = await self._records.get(INDEX_KEY)
        return [str(i) for i in reversed(decode_list(INDEX_KEY, data))]

    async def add(self, job_id: str) -> None:
        """Return once ``job_id`` is stored in the index (StoreError if the write failed)."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(done)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                logger.debug("adding %s job id(s) to the index in one write", len(batch))
                try:
                    await self._records.update(INDEX_KEY, _adding(list(batch)))
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flusher = None

    async def close(self) -> None:
        """Let a write in flight finish (its callers are waiting for it)."""
        if self._flusher is not None:
            await self._flusher


def _adding(job_ids: list[str]) -> Change[None]:
    def change(current: bytes | None) -> tuple[bytes | None, None]:
        ids = decode_list(INDEX_KEY, current)
        present = set(ids)
        new = [job_id for job_id in job_ids if job_id not in present]
        if not new:
            return None, None
        return orjson.dumps((ids + new)[-MAX_INDEX:]), None

    return change
