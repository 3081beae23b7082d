"""The State API without a transport: what daprd does between parsing a request and the store.

It checks and prefixes user keys (``keyPrefix``), calls the store under the store's outbound
resiliency policy (``sidecar.policy_runner``) and turns every failure into the DaprError daprd
returns (codes from dapr/dapr pkg/api/errors, pkg/messages and the HTTP/gRPC handlers). HTTP and
gRPC layers only parse and format.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sidecar import json_reader
from sidecar import metrics as m
from sidecar.breaker import Breakers, CircuitBreaker
from sidecar.components import Component
from sidecar.go_values import Marshal
from sidecar.policy_runner import run
from sidecar.resiliency import Policy, Resiliency
from sidecar.state import errors as err
from sidecar.state.base import (
    BulkGetItem,
    DeleteRequest,
    ETagInvalid,
    ETagMismatch,
    GetResponse,
    Querier,
    QueryItem,
    QueryResponse,
    SetRequest,
    StateError,
    StateStore,
    StreamAppend,
    StreamAppendingStore,
)
from sidecar.state.keys import illegal_key_message, key_prefix, original_key
from sidecar.state.query import QueryError, parse_query

T = TypeVar("T")
R = TypeVar("R", SetRequest, DeleteRequest)
_ETAG_ERRORS = (ETagMismatch, ETagInvalid)


@dataclass(frozen=True, slots=True)
class _Store:
    store: StateStore
    component: Component
    prefix: str  #: "<appid>||" etc.; "" for keyPrefix none
    #: The store again when it can append stream entries with its writes (the outbox's
    #: direct path); checked once here, as a Protocol isinstance check is slow.
    appending: StreamAppendingStore | None
    #: Its outbound resiliency policy (``targets.components.<name>.outbound`` or defaults).
    policy: Policy = Policy()
    breaker: CircuitBreaker | None = None

    def call(
        self, attempt: Callable[[], Awaitable[T]], permanent: tuple[type[Exception], ...] = ()
    ) -> Awaitable[T]:
        """``attempt()`` under the store's policy (at once when it has none)."""
        if self.policy.empty:
            return attempt()
        name = f"component[{self.component.name}] output"
        return run(self.policy, self.breaker, attempt, StateError, permanent, name)

    def set(self, request: SetRequest) -> Awaitable[None]:
        """One save; an etag failure is not retried (daprd's PerformBulkStoreOperation)."""
        return self.call(lambda: self.store.set(request), _ETAG_ERRORS)

    def delete(self, request: DeleteRequest) -> Awaitable[None]:
        return self.call(lambda: self.store.delete(request), _ETAG_ERRORS)

    async def each(
        self, requests: Sequence[R], one: Callable[[R], Awaitable[None]]
    ) -> list[StateError]:
        """Several saves or deletes at once; the failures that stand. Under a policy, as
        daprd's PerformBulkStoreOperation: a round that leaves failures is retried with only
        the items that failed for another reason than their etag (one retry budget and one
        breaker count per round). Unlike daprd, an etag failure of an earlier round is still
        reported when a later round succeeds (daprd then answers success for it)."""
        standing: list[StateError] = []  #: etag failures: never retried
        pending, failed = list(requests), list[StateError]()

        async def round_() -> None:
            nonlocal pending, failed
            outcomes = await asyncio.gather(*(_attempt(one(r)) for r in pending))
            standing.extend(o for o in outcomes if isinstance(o, _ETAG_ERRORS))
            retry = [
                (r, o)
                for r, o in zip(pending, outcomes, strict=True)
                if o is not None and not isinstance(o, _ETAG_ERRORS)
            ]
            pending, failed = [r for r, _ in retry], [o for _, o in retry]
            if failed:
                raise failed[0]

        try:
            await self.call(round_)
        except StateError as exc:
            # Retries spent: the last round's failures; a timeout or an open breaker: every
            # item that round was to send.
            if not any(exc is f for f in failed):
                failed = [exc] * len(pending)
            return standing + failed
        return standing


class StateService:
    """State operations on the stores the runtime loaded, keyed by component name.

    ``stores`` is read once. ``namespace`` is daprd's NAMESPACE (used by keyPrefix namespace).
    Every method raises DaprError with daprd's errorCode, HTTP status, gRPC code and details.
    Read methods accept the request metadata like daprd does; none of these stores use it.
    """

    def __init__(
        self,
        stores: Mapping[str, tuple[StateStore, Component]],
        app_id: str,
        namespace: str = "",
        metrics: m.ComponentMetrics | None = None,
        resiliency: Resiliency | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self.app_id = app_id
        self._metrics = metrics
        breakers = breakers or Breakers()
        self._stores = {}
        for name, (store, component) in stores.items():
            policy = (resiliency or Resiliency()).component_outbound(name, "Statestore")
            self._stores[name] = _Store(
                store,
                component,
                key_prefix(component, app_id, namespace),
                store if isinstance(store, StreamAppendingStore) else None,
                policy,
                breakers.component(policy.breaker, name) if policy.breaker else None,
            )

    def _lookup(self, name: str, app_id: str = "") -> _Store:
        """The store; its errors name ``app_id`` in their ErrorInfo, none by default as daprd's
        gRPC and query APIs (universal GetStateStore passes "")."""
        if not self._stores:
            raise err.not_configured(name, app_id)
        entry = self._stores.get(name)
        if entry is None:
            raise err.not_found(name, app_id)
        return entry

    def check_store(self, name: str, *, transactional: bool = False) -> None:
        """daprd's first checks of an HTTP state request, before it reads the body: the store
        exists (and supports transactions). Its errors carry the app id, as daprd's HTTP state
        handlers' do (http.go getStateStoreWithRequestValidation, onPostStateTransaction)."""
        entry = self._lookup(name, self.app_id)
        if transactional and "TRANSACTIONAL" not in entry.store.features:
            raise err.transactions_unsupported(name)

    def marshal(self, name: str) -> Marshal:
        """How store ``name`` writes a value the HTTP API decoded (see ``check_store``)."""
        return self._lookup(name, self.app_id).store.marshal

    def unrecorded(self, *, prefixed: bool = True) -> StateService:
        """The same stores, with no metrics and no resiliency policy: for the runtime's own
        calls (outbox markers), which daprd makes on the store directly, not through its API.
        Not ``prefixed``: keys are the store's own, without the ``keyPrefix`` (daprd's markers)."""
        twin = copy.copy(self)
        twin._metrics = None
        twin._stores = {
            name: dataclasses.replace(
                entry, policy=Policy(), breaker=None, prefix=entry.prefix if prefixed else ""
            )
            for name, entry in self._stores.items()
        }
        return twin

    async def _timed(self, store: str, operation: str, call: Awaitable[T]) -> T:
        """Await the store call, recorded as daprd's StateInvoked (success: no StateError)."""
        if self._metrics is None:
            return await call
        started = time.perf_counter()
        try:
            result = await call
        except StateError:
            self._metrics.state_invoked(store, operation, False, m.ms_since(started))
            raise
        self._metrics.state_invoked(store, operation, True, m.ms_since(started))
        return result

    def _outcomes(
        self, store: str, operation: str, started: float, failures: list[StateError]
    ) -> None:
        if self._metrics is not None:
            self._metrics.state_invoked(store, operation, not failures, m.ms_since(started))

    @staticmethod
    def _full_key(entry: _Store, key: str) -> str:
        problem = illegal_key_message(key)
        if problem:
            raise err.illegal_key(entry.component.name, key, problem)
        return entry.prefix + key

    async def get(
        self, store: str, key: str, metadata: Mapping[str, str] | None = None
    ) -> GetResponse | None:
        """The value, etag and metadata (ttlExpireTime) of ``key``; None when missing.

        HTTP answers None with 204; gRPC with empty data and etag.
        """
        entry = self._lookup(store)
        full = self._full_key(entry, key)
        try:
            return await self._timed(store, m.GET, entry.call(lambda: entry.store.get(full)))
        except StateError as exc:
            raise err.get_failed(store, key, exc) from exc

    async def bulk_get(
        self, store: str, keys: Sequence[str], metadata: Mapping[str, str] | None = None
    ) -> list[BulkGetItem]:
        """One item per key, in order, with USER keys; a missing key has ``response=None``."""
        entry = self._lookup(store)
        full = [self._full_key(entry, key) for key in keys]
        if not full:
            return []
        try:
            items = await self._timed(
                store, m.BULK_GET, entry.call(lambda: entry.store.bulk_get(full))
            )
        except StateError as exc:
            raise err.bulk_get_failed(exc) from exc
        return [dataclasses.replace(item, key=original_key(item.key)) for item in items]

    async def save(self, store: str, items: Sequence[SetRequest]) -> None:
        """Save each item, given with its USER key (not a transaction: with several items,
        some may fail alone). HTTP values must come with ``is_json=True``."""
        entry = self._lookup(store)
        requests = [self._set_request(entry, item, empty_key_error=True) for item in items]
        if not requests:
            return
        started = time.perf_counter()
        if len(requests) == 1:
            failure = await _attempt(entry.set(requests[0]))
            failures = [] if failure is None else [failure]
        else:
            failures = await entry.each(requests, entry.store.set)
        self._outcomes(store, m.SET, started, failures)
        if failures:
            raise err.operation_failed(err.SAVE, store, "", failures)

    async def delete(
        self,
        store: str,
        key: str,
        etag: str | None = None,
        metadata: Mapping[str, str] | None = None,
        concurrency: str = "",
        consistency: str = "",
    ) -> None:
        """Delete ``key``; with an etag only if it still matches (else 409 / ABORTED).

        ``concurrency`` and ``consistency`` are the client's options as sent ("" = unset).
        """
        entry = self._lookup(store)
        item = DeleteRequest(key, etag, metadata or {}, concurrency, consistency)
        request = self._delete_request(entry, item)
        started = time.perf_counter()
        failure = await _attempt(entry.delete(request))
        self._outcomes(store, m.DELETE, started, [] if failure is None else [failure])
        if failure is not None:
            raise err.operation_failed(err.DELETE, store, key, [failure]) from failure

    async def delete_bulk(self, store: str, items: Sequence[DeleteRequest]) -> None:
        """gRPC DeleteBulkState (USER keys): each key deleted on its own, failures together."""
        entry = self._lookup(store)
        requests = [self._delete_request(entry, item) for item in items]
        started = time.perf_counter()
        if len(requests) == 1:
            failure = await _attempt(entry.delete(requests[0]))
            failures = [] if failure is None else [failure]
        else:
            failures = await entry.each(requests, entry.store.delete)
        self._outcomes(store, m.BULK_DELETE, started, failures)
        if failures:
            raise err.operation_failed(err.BULK_DELETE, store, "", failures)

    async def transact(
        self,
        store: str,
        operations: Sequence[SetRequest | DeleteRequest],
        metadata: Mapping[str, str] | None = None,
        appends: Mapping[int, StreamAppend] | None = None,
        unprefixed: Sequence[SetRequest] = (),
    ) -> None:
        """Apply upserts and deletes (USER keys); atomic where the store is (see each store).

        ``metadata`` is the request-level metadata; the stores here read only each
        operation's own metadata. ``appends`` (the outbox's direct path) are stream entries
        written with the operations at their indexes, by a store that can. ``unprefixed``
        upserts follow the operations with their keys as given: the outbox's markers, which
        daprd adds after the API has prefixed the user's keys.
        """
        entry = self._lookup(store)
        if "TRANSACTIONAL" not in entry.store.features:
            raise err.transactions_unsupported(store)
        requests: list[SetRequest | DeleteRequest] = [
            self._set_request(entry, op, empty_key_error=False)
            if isinstance(op, SetRequest)
            else self._delete_request(entry, op)
            for op in operations
        ]
        bare = dataclasses.replace(entry, prefix="")
        requests += [self._set_request(bare, op, empty_key_error=False) for op in unprefixed]
        if not requests:
            return
        appending = entry.appending
        if appends and appending is None:
            raise TypeError(f"state store {store} cannot append stream entries")

        def attempt() -> Awaitable[None]:
            if appends and appending is not None:
                return appending.transact_appending(requests, appends)
            return entry.store.transact(requests)

        try:
            # Every failure is retried, etag ones too, as daprd's ExecuteStateTransaction.
            await self._timed(store, m.TRANSACTION, entry.call(attempt))
        except StateError as exc:
            raise err.transaction_failed(exc) from exc

    async def query(
        self, store: str, text: bytes, metadata: Mapping[str, str] | None = None
    ) -> QueryResponse:
        """The alpha query API, in daprd's order: the store, whether it is a Querier, the
        body decoded, then the store's run. Results carry USER keys. No match: no results and
        no token (HTTP answers 204)."""
        entry = self._lookup(store)
        querier = entry.store
        if not isinstance(querier, Querier):
            raise err.query_unsupported(store)
        try:
            query = parse_query(text)
        except QueryError as exc:
            raise err.query_failed(store, f"failed to parse JSON query body: {exc}") from None
        try:
            response = await self._timed(store, m.QUERY, entry.call(lambda: querier.query(query)))
        except StateError as exc:
            raise err.query_failed(store, exc) from exc
        if not response.results:
            return QueryResponse([], "")
        results = [QueryItem(original_key(r.key), r.data, r.etag) for r in response.results]
        return QueryResponse(results, response.token)

    def _set_request(self, entry: _Store, item: SetRequest, *, empty_key_error: bool) -> SetRequest:
        if empty_key_error and not item.key:
            raise err.empty_key()
        full = self._full_key(entry, item.key)
        is_json = item.is_json
        if not is_json and item.metadata.get("contentType") == "application/json":
            # daprd's gRPC SaveState decodes such values as JSON before the store sees them.
            try:
                json_reader.fast_loads(item.value)
            except ValueError as exc:
                raise err.bad_json(str(exc)) from exc
            is_json = True
        return dataclasses.replace(item, key=full, etag=item.etag or None, is_json=is_json)

    def _delete_request(self, entry: _Store, item: DeleteRequest) -> DeleteRequest:
        full = self._full_key(entry, item.key)
        return dataclasses.replace(item, key=full, etag=item.etag or None)


async def _attempt(call: Awaitable[None]) -> StateError | None:
    """Await a store call and hand back its StateError instead of raising it."""
    try:
        await call
    except StateError as exc:
        return exc
    return None
