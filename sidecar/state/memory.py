"""``state.in-memory``: a per-process dict with uuid etags, TTL and atomic transactions.

Semantics follow components-contrib state/in-memory: etags checked before any change,
transactions validate every etag first and then apply, expired items read as missing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sidecar import go_values
from sidecar.state.base import (
    BulkGetItem,
    Concurrency,
    DeleteRequest,
    GetResponse,
    InvalidRequest,
    SetRequest,
)
from sidecar.state.metadata import (
    TTL_EXPIRE_TIME,
    TTL_KEY,
    check_options,
    etag_mismatch,
    go_atoi,
    rfc3339,
)

#: Contrib sweeps expired items once a second; reads also drop them lazily.
SWEEP_INTERVAL = 1.0


@dataclass(slots=True)
class _Item:
    data: bytes
    etag: str
    expires: float | None  #: epoch seconds, None = never

    def expired(self, now: float) -> bool:
        return self.expires is not None and now > self.expires

    def response(self) -> GetResponse:
        meta = {}
        if self.expires is not None:
            meta[TTL_EXPIRE_TIME] = rfc3339(datetime.fromtimestamp(self.expires, UTC))
        return GetResponse(self.data, self.etag, meta)


def _ttl_seconds(metadata: Mapping[str, str]) -> int:
    """Contrib's in-memory rule: an integer, negative values mean no expiry."""
    raw = metadata.get(TTL_KEY, "")
    if raw == "":
        return 0
    try:
        return max(go_atoi(raw, "Atoi"), 0)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _checked_ttl(request: SetRequest) -> int:
    """Contrib's doSetValidateParameters: the options, then the TTL."""
    check_options(request.concurrency, request.consistency)
    return _ttl_seconds(request.metadata)


class MemoryStateStore:
    """Everything runs on the event loop without awaiting, so each call is atomic."""

    capabilities = ("ETAG", "TRANSACTIONAL", "TTL", "DELETE_WITH_PREFIX", "KEYS_LIKE", "ACTOR")
    features = frozenset(capabilities)
    marshal = staticmethod(go_values.encoding_json)

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[str, _Item] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def init(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name=f"state-{self.name}-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.time()
            for key in [k for k, item in self._items.items() if item.expired(now)]:
                del self._items[key]

    def _live(self, key: str, now: float) -> _Item | None:
        item = self._items.get(key)
        if item is not None and item.expired(now):
            del self._items[key]
            return None
        return item

    async def get(self, key: str) -> GetResponse | None:
        item = self._live(key, time.time())
        return item.response() if item else None

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]:
        now = time.time()
        items = [(key, self._live(key, now)) for key in keys]
        return [BulkGetItem(key, item.response() if item else None) for key, item in items]

    def _check_etag(self, key: str, etag: str | None, concurrency: str, now: float) -> None:
        item = self._live(key, now)
        if concurrency == Concurrency.FIRST_WRITE and not etag:
            if item is not None:
                raise etag_mismatch("item already exists and no etag was passed")
        elif etag:
            if item is None:
                raise etag_mismatch(f"state not exist or expired for key={key}")
            if item.etag != etag:
                raise etag_mismatch(
                    f"state etag not match for key={key}: current={item.etag}, expect={etag}"
                )

    def _put(self, request: SetRequest, ttl: int, now: float) -> None:
        expires = now + ttl if ttl > 0 else None
        self._items[request.key] = _Item(request.value, str(uuid.uuid4()), expires)

    async def set(self, request: SetRequest) -> None:
        ttl = _checked_ttl(request)
        now = time.time()
        self._check_etag(request.key, request.etag, request.concurrency, now)
        self._put(request, ttl, now)

    async def delete(self, request: DeleteRequest) -> None:
        check_options(request.concurrency, request.consistency)
        now = time.time()
        self._check_etag(request.key, request.etag, request.concurrency, now)
        self._items.pop(request.key, None)

    async def transact(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        # Contrib's Multi checks the options of its upserts only: it hands a *DeleteRequest to
        # CheckRequestOptions, whose type switch matches none of its cases.
        ttls = [_checked_ttl(op) if isinstance(op, SetRequest) else 0 for op in operations]
        now = time.time()
        for op in operations:
            self._check_etag(op.key, op.etag, op.concurrency, now)
        for op, ttl in zip(operations, ttls, strict=True):
            if isinstance(op, SetRequest):
                self._put(op, ttl, now)
            else:
                self._items.pop(op.key, None)
