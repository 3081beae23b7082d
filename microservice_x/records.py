"""Compare-and-swap on single keys of a Dapr state store, through the SDK's gRPC client.

A change is computed from the value just read and written with its etag (insert-only for a new
key); if another writer got there first, the key is re-read and the change computed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import orjson
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

from dapr_support.clients import ClientKeeper
from microservice_x.errors import CorruptRecord, StoreError

logger = logging.getLogger(__name__)

#: Compare-and-swap rounds before giving up (the delivery is then retried by Dapr).
MAX_CAS_ATTEMPTS = 25

T = TypeVar("T")
#: Given the current value (None: absent): the value to write (None: no write) and a result.
Change = Callable[[bytes | None], tuple[bytes | None, T]]
Read = tuple[bytes | None, str | None]


class _Conflict(Exception):
    pass


def _reason(exc: Exception) -> str:
    if isinstance(exc, DaprGrpcError):
        details: str = exc.details()  # type: ignore[no-untyped-call]
        return details
    return str(exc)


def _is_conflict(exc: Exception) -> bool:
    """Dapr answers an etag mismatch with gRPC ABORTED."""
    # SDK 1.18's save_state wraps the gRPC error in a DaprInternalError that keeps only the
    # message; the status code is on the original error it chains.
    error: BaseException | None = exc if isinstance(exc, grpc.RpcError) else exc.__cause__
    if not isinstance(error, grpc.RpcError):
        return False
    return bool(error.code() == grpc.StatusCode.ABORTED)


def decode_list(key: str, data: bytes | None) -> list[Any]:
    """A stored JSON list (absent: empty)."""
    if data is None:
        return []
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecord(f"stored record {key!r} is not JSON: {exc}") from exc
    if not isinstance(value, list):
        raise CorruptRecord(f"stored record {key!r} is not a list")
    return value


def _ttl_metadata(ttl_seconds: int | None) -> dict[str, str] | None:
    return None if ttl_seconds is None else {"ttlInSeconds": str(ttl_seconds)}


class Records:
    """Keys of one app id in one state store (Dapr prefixes them with the app id)."""

    def __init__(self, clients: ClientKeeper, store_name: str) -> None:
        self._clients = clients
        self.store = store_name
        self._first_write = StateOptions(concurrency=Concurrency.first_write)

    async def store_type(self) -> str | None:
        """The component type of the store (``state.redis`` ...), as the sidecar reports it."""
        try:
            metadata = await self._clients.current.get_metadata()
        except DaprGrpcError as exc:
            self._clients.failed(exc)
            raise StoreError(f"reading the sidecar's metadata: {_reason(exc)}") from exc
        types = {c.name: c.type for c in metadata.registered_components}
        return types.get(self.store)

    async def get(self, key: str) -> Read:
        try:
            response = await self._clients.current.get_state(self.store, key)
        except DaprGrpcError as exc:
            self._clients.failed(exc)
            raise StoreError(f"reading {key!r} from {self.store!r}: {_reason(exc)}") from exc
        data: bytes = response.data
        etag: str = response.etag
        return (data or None), (etag or None)

    async def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The values of the keys that exist, in one call."""
        reads = await self.get_reads(keys)
        return {key: data for key, (data, _) in reads.items() if data is not None}

    async def get_reads(self, keys: list[str]) -> dict[str, Read]:
        """Value and etag of every key (absent: ``(None, None)``), in one call; in halves when
        the answer is more than the sidecar sends in one message (its --max-body-size, 4 MiB
        by default: a few dozen views of jobs with large results)."""
        try:
            response = await self._clients.current.get_bulk_state(self.store, keys, parallelism=8)
        except DaprGrpcError as exc:
            code = exc.code()  # type: ignore[no-untyped-call]
            if len(keys) > 1 and code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                half = len(keys) // 2
                return await self.get_reads(keys[:half]) | await self.get_reads(keys[half:])
            self._clients.failed(exc)
            raise StoreError(f"bulk read from {self.store!r}: {_reason(exc)}") from exc
        reads: dict[str, Read] = dict.fromkeys(keys, (None, None))
        for item in response.items:
            if item.error:
                raise StoreError(f"reading {item.key!r} from {self.store!r}: {item.error}")
            data = item.data if isinstance(item.data, bytes) else item.data.encode()
            reads[item.key] = (data or None), (item.etag or None)
        return reads

    async def save_many(
        self, writes: dict[str, tuple[bytes, str | None]], ttl_seconds: int | None = None
    ) -> bool:
        """Save several keys in one call, each with its etag (None: insert-only) and, when
        given, a time to live counted from this write (Dapr's ``ttlInSeconds``).

        True when all were saved. False when the call failed: some keys may have been saved and
        others not (Dapr saves the items one by one), so the caller re-reads each and retries.
        """
        # SDK 1.18's save_bulk_state copies `options` into the request as they are, so it needs
        # the protobuf message rather than the StateOptions its signature names.
        insert_only: Any = self._first_write.get_proto()  # type: ignore[no-untyped-call]
        metadata = _ttl_metadata(ttl_seconds)
        items = [
            StateItem(
                key, value, etag=etag, options=None if etag else insert_only, metadata=metadata
            )
            for key, (value, etag) in writes.items()
        ]
        try:
            await self._clients.current.save_bulk_state(self.store, items)
        except (DaprGrpcError, DaprInternalError) as exc:
            self._clients.failed(exc)
            logger.debug("saving %s keys at once failed (%s); one by one", len(items), exc)
            return False
        return True

    async def _save(
        self, key: str, value: bytes, etag: str | None, ttl_seconds: int | None
    ) -> None:
        client = self._clients.current
        metadata = _ttl_metadata(ttl_seconds)
        try:
            if etag is None:
                await client.save_state(
                    self.store, key, value, options=self._first_write, state_metadata=metadata
                )
            else:
                await client.save_state(self.store, key, value, etag=etag, state_metadata=metadata)
        except (DaprGrpcError, DaprInternalError) as exc:
            self._clients.failed(exc)
            if _is_conflict(exc):
                raise _Conflict from exc
            # state.redis reports a first-write insert on an existing key as a plain error, not
            # an etag mismatch (that wrapping happens only when an etag was given): a key that
            # exists now means another writer won the race.
            if etag is None and (await self.get(key))[0] is not None:
                raise _Conflict from exc
            raise StoreError(f"writing {key!r} to {self.store!r}: {_reason(exc)}") from exc

    async def put(self, key: str, value: bytes, ttl_seconds: int | None = None) -> None:
        """Save the key whatever it holds (last write wins)."""
        try:
            await self._clients.current.save_state(
                self.store, key, value, state_metadata=_ttl_metadata(ttl_seconds)
            )
        except (DaprGrpcError, DaprInternalError) as exc:
            self._clients.failed(exc)
            raise StoreError(f"writing {key!r} to {self.store!r}: {_reason(exc)}") from exc

    async def compare_and_set(self, key: str, value: bytes, etag: str | None) -> bool:
        """Save the key if it still has ``etag`` (None: if it is still absent); False if another
        writer changed it first."""
        try:
            await self._save(key, value, etag, None)
        except _Conflict:
            return False
        return True

    async def update(
        self,
        key: str,
        change: Change[T],
        first_read: Read | None = None,
        ttl_seconds: int | None = None,
    ) -> T:
        """Apply ``change`` to the key by compare-and-swap; ``first_read`` saves one read.
        With ``ttl_seconds`` the key expires that long after the write."""
        read = first_read
        for attempt in range(1, MAX_CAS_ATTEMPTS + 1):
            current, etag = read if read is not None else await self.get(key)
            read = None
            new, result = change(current)
            if new is None:
                return result
            try:
                await self._save(key, new, etag, ttl_seconds)
            except _Conflict:
                logger.debug("etag conflict on %s (attempt %s), re-reading", key, attempt)
                continue
            return result
        raise StoreError(f"{key!r} kept changing under {MAX_CAS_ATTEMPTS} attempts to update it")
