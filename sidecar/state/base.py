"""What every state store component offers the runtime, and the errors it raises.

The runtime validates and prefixes keys before calling a store; stores see full keys
(``<appid>||<key>``) and raw bytes, and implement the component's own ETag, TTL and
transaction semantics (see ../shared/dapr-contract.md, section 3 and 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from sidecar.go_values import Marshal
from sidecar.redis_endpoint import RedisEndpoint


class Concurrency(StrEnum):
    """The concurrency models contrib knows (state/request_options.go). Requests carry the
    client's text as it came ("" when unset): a store that validates options refuses others."""

    FIRST_WRITE = "first-write"  #: an etag is required to overwrite; without one, insert only
    LAST_WRITE = "last-write"  #: the last write wins; state.redis then ignores the etag


class Consistency(StrEnum):
    STRONG = "strong"  #: contrib's state.Strong
    EVENTUAL = "eventual"  #: contrib's state.Eventual


@dataclass(frozen=True, slots=True)
class SetRequest:
    key: str
    value: bytes
    etag: str | None = None  #: None and "" both mean "no etag"
    metadata: Mapping[str, str] = field(default_factory=dict)  #: e.g. ttlInSeconds, contentType
    concurrency: str = ""  #: options.concurrency as sent: a Concurrency, "" or anything else
    consistency: str = ""  #: options.consistency as sent: a Consistency, "" or anything else
    #: value is JSON text (HTTP API, or gRPC with contentType application/json): SQL stores keep
    #: it as JSON (queryable); otherwise it is binary and they store it base64-encoded like daprd.
    is_json: bool = False
    #: What daprd's outbox publishes as this upsert's data when it is not ``value``: for a value
    #: the HTTP API decoded, Go's json.Marshal of it under a JSON content type, else its %v.
    event_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    key: str
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: str = ""  #: as on SetRequest
    consistency: str = ""


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """An entry for a Redis stream on the store's own server: ``XADD <stream> <args>``.

    The outbox hands these to ``state.redis`` when its pubsub is on the same Redis, so each
    upsert and its event are written by one script: both or neither.
    """

    stream: str
    args: tuple[str | bytes | int, ...]  #: everything after the stream's name


@dataclass(frozen=True, slots=True)
class GetResponse:
    data: bytes
    etag: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)  #: e.g. ttlExpireTime (RFC 3339)


@dataclass(frozen=True, slots=True)
class BulkGetItem:
    key: str
    response: GetResponse | None  #: None when the key is missing or expired
    error: str = ""


@dataclass(frozen=True, slots=True)
class QueryItem:
    key: str
    data: bytes
    etag: str | None


@dataclass(frozen=True, slots=True)
class QueryResponse:
    results: Sequence[QueryItem]
    token: str = ""


class StateError(Exception):
    """Base of the errors a store raises; the API layer maps them to daprd's codes."""


class ETagMismatch(StateError):
    """The etag given does not match the stored one (or first-write found an existing key)."""


class ETagInvalid(StateError):
    """The etag is malformed for this store (e.g. not a number for state.redis)."""


class InvalidRequest(StateError):
    """Bad metadata such as a non-integer ttlInSeconds, unknown options, or a bad query."""


class StoreUnavailable(StateError):
    """The backend did not answer (connection refused, timeout)."""


class OutcomeUnknown(StoreUnavailable):
    """The store went away during a transaction, which may or may not have been applied."""


class PartialTransaction(StateError):
    """A transaction on a non-atomic store (state.redis) failed with some operations applied.

    ``applied`` holds the indexes of those operations, so the outbox publishes exactly the
    changes that were stored.
    """

    def __init__(self, message: str, applied: frozenset[int]) -> None:
        super().__init__(message)
        self.applied = applied


class StateStore(Protocol):
    """A state store component as the runtime uses it."""

    name: str
    #: daprd feature names listed in metadata: ETAG, TRANSACTIONAL, TTL, QUERY_API, ...
    features: frozenset[str]

    @property
    def marshal(self) -> Marshal:
        """How the component's library writes a value daprd decoded from JSON (the HTTP
        API's): ``sidecar.go_values``' encoding_json or jsoniter_fastest."""

    async def init(self) -> None:
        """Connect and check the backend answers; raise with a clear message if not."""

    async def close(self) -> None: ...

    async def get(self, key: str) -> GetResponse | None: ...

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]: ...

    async def set(self, request: SetRequest) -> None: ...

    async def delete(self, request: DeleteRequest) -> None: ...

    async def transact(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        """Apply all operations; atomic where the component is (not on state.redis)."""


@runtime_checkable
class Querier(Protocol):
    """A store with the alpha query API: contrib's ``state.Querier``, which daprd asks for
    before it even parses a query."""

    async def query(self, query: Mapping[str, object]) -> QueryResponse:
        """Run a query ``parse_query`` accepted."""


@runtime_checkable
class StreamAppendingStore(Protocol):
    """A store that can append stream entries in the same atomic step as its writes."""

    #: Where the store's Redis is; an append is only possible to a stream on the same one.
    endpoint: RedisEndpoint

    async def transact_appending(
        self,
        operations: Sequence[SetRequest | DeleteRequest],
        appends: Mapping[int, StreamAppend],
    ) -> None:
        """``transact``, where ``appends[i]`` is written if and only if operation i is."""
