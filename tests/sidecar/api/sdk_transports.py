"""The SDK side of ``transports.py``: ``dapr.clients.DaprClient`` and its aio twin.

``SyncSdkApi`` runs each sync call in a worker thread, as an async app would; ``AioSdkApi``
awaits the aio client. Both raise ``Failure`` with what the SDK exposes of an error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError, DaprHttpError, DaprInternalError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

from tests.sidecar.api.transports import Failure, Found, Meta, Op

T = TypeVar("T")


@contextmanager
def sdk_errors(transport: str) -> Iterator[None]:
    """Turn what the SDK raises into a Failure with exactly what the SDK exposes."""
    try:
        yield
    except DaprGrpcError as err:
        details = err.status_details()
        info = details.resource_info
        resource = (info["resource_type"], info["resource_name"]) if info else None
        bad = details.bad_request or {}
        violations = [v["field"] for v in bad.get("field_violations", [])]
        raise Failure(
            transport, err.code().name, err.error_code(), err.details() or "", resource, violations
        ) from err
    except DaprHttpError as err:
        status = str(err.status_code)
        raise Failure(transport, status, err.error_code or "", err.message or "") from err
    except DaprInternalError as err:
        # The aio save_state keeps only the gRPC message (dapr/aio/clients/grpc/client.py).
        raise Failure(transport, "", err.error_code or "", err.message or "") from err


def _options(first_write: bool) -> StateOptions | None:
    return StateOptions(concurrency=Concurrency.first_write) if first_write else None


def _found(data: bytes | str, etag: str) -> Found | None:
    # gRPC GetState answers a missing key with empty data and etag, no error.
    raw = data.encode() if isinstance(data, str) else data
    return Found(raw, etag, None) if raw or etag else None


def _operations(ops: list[Op]) -> list[TransactionalStateOperation]:
    return [
        TransactionalStateOperation(
            key=op.key,
            data=json.dumps(op.value) if op.kind == "upsert" else "",
            etag=op.etag,
            operation_type=TransactionOperationType(op.kind),
        )
        for op in ops
    ]


def _meta(response: Any) -> Meta:
    components = {
        c.name: (c.type, frozenset(c.capabilities)) for c in response.registered_components
    }
    return Meta(response.application_id, components, dict(response.extended_metadata))


class SyncSdkApi:
    """The sync SDK client, each call in a worker thread as an async app would run it."""

    name = "sync"

    def __init__(self, client: DaprClient) -> None:
        self.client = client

    async def _run(self, call: Callable[[], T]) -> T:
        def guarded() -> T:
            with sdk_errors(self.name):
                return call()

        return await asyncio.to_thread(guarded)

    async def save(
        self,
        store: str,
        key: str,
        value: Any,
        *,
        etag: str | None = None,
        metadata: Mapping[str, str] | None = None,
        first_write: bool = False,
    ) -> None:
        text, options, meta = json.dumps(value), _options(first_write), dict(metadata or {})
        await self._run(
            lambda: self.client.save_state(
                store, key, text, etag=etag, options=options, state_metadata=meta
            )
        )

    async def save_many(self, store: str, items: list[tuple[str, Any, str | None]]) -> None:
        states = [StateItem(key=k, value=json.dumps(v), etag=e) for k, v, e in items]
        await self._run(lambda: self.client.save_bulk_state(store, states))

    async def get(self, store: str, key: str) -> Found | None:
        got = await self._run(lambda: self.client.get_state(store, key))
        return _found(got.data, got.etag)

    async def bulk_get(self, store: str, keys: list[str]) -> list[tuple[str, Found | None]]:
        got = await self._run(lambda: self.client.get_bulk_state(store, keys))
        return [(i.key, _found(i.data, i.etag)) for i in got.items]

    async def delete(self, store: str, key: str, *, etag: str | None = None) -> None:
        await self._run(lambda: self.client.delete_state(store, key, etag=etag))

    async def transact(self, store: str, ops: list[Op]) -> None:
        operations = _operations(ops)
        await self._run(lambda: self.client.execute_state_transaction(store, operations))

    async def query(self, store: str, query: Mapping[str, Any]) -> list[tuple[str, Any]]:
        got = await self._run(lambda: self.client.query_state(store, json.dumps(query)))
        return [(r.key, json.loads(r.value)) for r in got.results]

    async def publish(
        self, pubsub: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        meta = dict(metadata)
        await self._run(
            lambda: self.client.publish_event(
                pubsub, topic, data, publish_metadata=meta, data_content_type=content_type or None
            )
        )

    async def bulk_publish(
        self, pubsub: str, topic: str, events: list[str], metadata: Mapping[str, str]
    ) -> list[str]:
        meta = dict(metadata)
        got = await self._run(
            lambda: self.client.publish_events(
                pubsub, topic, events, publish_metadata=meta, data_content_type="text/plain"
            )
        )
        return [entry.entry_id for entry in got.failed_entries]

    async def invoke(self, app_id: str, method: str, data: bytes) -> tuple[int, Any]:
        got = await self._run(
            lambda: self.client.invoke_method(app_id, method, data=data, http_verb="POST")
        )
        return got.status_code or 200, got.json()

    async def metadata(self) -> Meta:
        return _meta(await self._run(self.client.get_metadata))

    async def set_metadata(self, key: str, value: str) -> None:
        await self._run(lambda: self.client.set_metadata(key, value))


class AioSdkApi:
    name = "aio"

    def __init__(self, client: AioDaprClient) -> None:
        self.client = client

    async def _run(self, call: Awaitable[T]) -> T:
        with sdk_errors(self.name):
            return await call

    async def save(
        self,
        store: str,
        key: str,
        value: Any,
        *,
        etag: str | None = None,
        metadata: Mapping[str, str] | None = None,
        first_write: bool = False,
    ) -> None:
        await self._run(
            self.client.save_state(
                store,
                key,
                json.dumps(value),
                etag=etag,
                options=_options(first_write),
                state_metadata=dict(metadata or {}),
            )
        )

    async def save_many(self, store: str, items: list[tuple[str, Any, str | None]]) -> None:
        states = [StateItem(key=k, value=json.dumps(v), etag=e) for k, v, e in items]
        await self._run(self.client.save_bulk_state(store, states))

    async def get(self, store: str, key: str) -> Found | None:
        got = await self._run(self.client.get_state(store, key))
        return _found(got.data, got.etag)

    async def bulk_get(self, store: str, keys: list[str]) -> list[tuple[str, Found | None]]:
        got = await self._run(self.client.get_bulk_state(store, keys))
        return [(i.key, _found(i.data, i.etag)) for i in got.items]

    async def delete(self, store: str, key: str, *, etag: str | None = None) -> None:
        await self._run(self.client.delete_state(store, key, etag=etag))

    async def transact(self, store: str, ops: list[Op]) -> None:
        await self._run(self.client.execute_state_transaction(store, _operations(ops)))

    async def query(self, store: str, query: Mapping[str, Any]) -> list[tuple[str, Any]]:
        got = await self._run(self.client.query_state(store, json.dumps(query)))
        return [(r.key, json.loads(r.value)) for r in got.results]

    async def publish(
        self, pubsub: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        await self._run(
            self.client.publish_event(
                pubsub,
                topic,
                data,
                publish_metadata=dict(metadata),
                data_content_type=content_type or None,
            )
        )

    async def bulk_publish(
        self, pubsub: str, topic: str, events: list[str], metadata: Mapping[str, str]
    ) -> list[str]:
        got = await self._run(
            self.client.publish_events(
                pubsub,
                topic,
                list(events),
                publish_metadata=dict(metadata),
                data_content_type="text/plain",
            )
        )
        return [entry.entry_id for entry in got.failed_entries]

    async def invoke(self, app_id: str, method: str, data: bytes) -> tuple[int, Any]:
        got = await self._run(self.client.invoke_method(app_id, method, data, http_verb="POST"))
        return got.status_code or 200, got.json()

    async def metadata(self) -> Meta:
        return _meta(await self._run(self.client.get_metadata()))

    async def set_metadata(self, key: str, value: str) -> None:
        await self._run(self.client.set_metadata(key, value))
