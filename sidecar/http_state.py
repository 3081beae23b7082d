"""The HTTP state API (``/v1.0/state/...``): parse daprd's JSON bodies, format its answers.

Values arrive as JSON and are stored as the store's Go library writes the value daprd decoded
(``sidecar.go_values``); a missing key answers 204 with no body (contract section 3).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response

from sidecar import go_scanner, go_values, json_reader
from sidecar.errors import DaprError
from sidecar.go_marshal import compact, encoded
from sidecar.go_values import Marshal
from sidecar.gofmt import go_format
from sidecar.http_paths import DaprRoute
from sidecar.state import http_bodies as bodies
from sidecar.state.base import DeleteRequest, SetRequest
from sidecar.state.errors import unsupported_operation
from sidecar.state.http_bodies import StateItem

if TYPE_CHECKING:
    from sidecar.runtime import Runtime

logger = logging.getLogger(__name__)

_JSON = "application/json"
#: Where Go's decoder says a number too large for a float64 was (UnmarshalTypeError's context).
_SAVE_VALUE = "struct field SetRequest.value"
_OPERATION = "struct field stateTransactionRequestBodyOperation.operations.request"
Handler = Callable[[Request], Awaitable[Response]]


def _malformed(exc: object) -> DaprError:
    """daprd's messages.ErrMalformedRequest (bulk get, transaction bodies)."""
    return DaprError(
        "ERR_MALFORMED_REQUEST",
        f"failed deserializing HTTP body: {exc}",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def _save_malformed(exc: object) -> DaprError:
    """onPostState answers a body it cannot decode with the decoder's own error text."""
    return DaprError("ERR_MALFORMED_REQUEST", str(exc), 400, grpc.StatusCode.INVALID_ARGUMENT)


def request_metadata(request: Request) -> dict[str, str]:
    """The ``metadata.*`` query parameters; a repeated one by its first value, as daprd's
    getMetadataFromRequest reads Go's url.Values."""
    if not request.scope["query_string"]:
        return {}
    metadata: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata."):
            metadata.setdefault(key[9:], value)
    return metadata


def _query(request: Request, name: str) -> str:
    """Go's ``url.Values.Get``: the first value, "" when absent."""
    values = request.query_params.getlist(name)
    return values[0] if values else ""


async def _body(request: Request) -> tuple[bytes, Any]:
    """The raw body and its first JSON value, as daprd's json.NewDecoder(r.Body).Decode reads
    it; ValueError with Go's message otherwise ("EOF" when empty)."""
    raw = await request.body()
    return raw, json_reader.go_decode(raw, go_values.state_number)


def _with_query(item: StateItem, query: Mapping[str, str]) -> dict[str, str]:
    """The item's metadata with the query's ``metadata.*`` on top (a nil map becomes it)."""
    return {**(item.metadata or {}), **query}


def _event_data(value: Any, content_type: str) -> bytes:
    """What daprd's outbox publishes for a decoded value (pkg/runtime/pubsub/outbox.go)."""
    if content_type.lower() == "application/json":
        return go_values.encoding_json(value)
    return go_format(value).encode()


def _set_request(
    item: StateItem, query: Mapping[str, str], marshal: Marshal, *, upsert: bool = False
) -> SetRequest:
    """A save item, or with ``upsert`` a transaction's, whose event the outbox may publish."""
    metadata = _with_query(item, query)
    content_type = metadata.get("contentType", "")
    return SetRequest(
        key=item.key,
        value=marshal(item.value),
        event_data=_event_data(item.value, content_type) if upsert else None,
        etag=item.etag or None,
        metadata=metadata,
        concurrency=item.concurrency,
        consistency=item.consistency,
        is_json=True,
    )


def _delete_request(item: StateItem, query: Mapping[str, str]) -> DeleteRequest:
    return DeleteRequest(
        key=item.key,
        etag=item.etag or None,
        metadata=_with_query(item, query),
        concurrency=item.concurrency,
        consistency=item.consistency,
    )


class _NoJson(ValueError):
    """A stored value json.Marshal cannot embed as a json.RawMessage: daprd's encoder fails."""


def _raw_json(data: bytes) -> orjson.Fragment:
    """Stored bytes as daprd writes them into a bulk get or query answer: a json.RawMessage,
    compacted with HTML-safe escapes; _NoJson when they are no JSON to Go's scanner."""
    try:
        json_reader.fast_loads(data)
    except ValueError:
        if go_scanner.scan(data, whole=True).error:
            raise _NoJson from None
    return orjson.Fragment(compact(data))


def _encoded(value: Callable[[], Any], what: str) -> Response:
    """daprd's json.NewEncoder(w).Encode of an answer holding stored values: a newline after
    the JSON; when one value is no JSON, 200 with no body at all (the encoder wrote nothing)."""
    try:
        body = encoded(value(), sort_keys=False)
    except _NoJson:
        logger.warning("Failed to encode %s response as JSON: a stored value is no JSON", what)
        body = b""
    return Response(body, media_type=_JSON)


class StateHttp:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def get(self, request: Request) -> Response:
        params = request.path_params
        self.rt.state.check_store(params["store"])
        found = await self.rt.state.get(params["store"], params["key"], request_metadata(request))
        if found is None:
            return Response(status_code=204)
        response = Response(found.data, media_type=_JSON)
        if found.etag:
            response.headers["ETag"] = found.etag
        for key, value in found.metadata.items():
            response.headers[f"metadata.{key}"] = value
        return response

    async def save(self, request: Request) -> Response:
        store = request.path_params["store"]
        self.rt.state.check_store(store)
        try:
            raw, body = await _body(request)
            literal = partial(go_values.first_out_of_range, raw)
            items = [
                dataclasses.replace(item, value=go_values.as_go(item.value, _SAVE_VALUE, literal))
                for item in bodies.save_items(body)
            ]
        except ValueError as exc:
            raise _save_malformed(exc) from None
        query = request_metadata(request)
        marshal = self.rt.state.marshal(store)
        await self.rt.state.save(store, [_set_request(i, query, marshal) for i in items])
        return Response(status_code=204)

    async def delete(self, request: Request) -> Response:
        params = request.path_params
        self.rt.state.check_store(params["store"])
        await self.rt.state.delete(
            params["store"],
            params["key"],
            request.headers.get("if-match") or None,
            request_metadata(request),
            _query(request, "concurrency"),
            _query(request, "consistency"),
        )
        return Response(status_code=204)

    async def bulk(self, request: Request) -> Response:
        store = request.path_params["store"]
        self.rt.state.check_store(store)
        try:
            raw, body = await _body(request)
            keys = bodies.bulk_get(body, raw).keys
        except ValueError as exc:
            raise _malformed(exc) from None
        items = await self.rt.state.bulk_get(store, keys, request_metadata(request))

        def answer() -> list[dict[str, Any]]:  # daprd's BulkGetResponse structs
            out: list[dict[str, Any]] = []
            for item in items:
                entry: dict[str, Any] = {"key": item.key}
                if item.error:
                    entry["error"] = item.error
                elif item.response is not None and item.response.data:
                    entry["data"] = _raw_json(item.response.data)
                    if item.response.etag:
                        entry["etag"] = item.response.etag
                    if item.response.metadata:
                        entry["metadata"] = dict(sorted(item.response.metadata.items()))
                out.append(entry)
            return out

        return _encoded(answer, "bulk get")

    async def transaction(self, request: Request) -> Response:
        store = request.path_params["store"]
        self.rt.state.check_store(store, transactional=True)
        try:
            raw, body = await _body(request)
            parsed = bodies.transaction(body)
            literal = partial(go_values.first_out_of_range, raw)
            for op in parsed.operations:  # a request is a map, converted in place, or refused
                go_values.as_go(op.request, _OPERATION, literal)
        except ValueError as exc:
            raise _malformed(exc) from None
        if not parsed.operations:
            return Response(status_code=204)
        # daprd's onPostStateTransaction: each operation gets the query's metadata.* on top of
        # its own; the body's metadata (the query's on top) is the transaction's only.
        query = request_metadata(request)
        metadata = {**(parsed.metadata or {}), **query}
        operations: list[SetRequest | DeleteRequest] = []
        marshal = self.rt.state.marshal(store)
        for op in parsed.operations:
            if op.operation not in ("upsert", "delete"):
                raise unsupported_operation(op.operation)
            delete = op.operation == "delete"
            try:
                item = bodies.operation_request(op.request, delete=delete)
            except ValueError as exc:
                raise _malformed(exc) from None
            if delete:
                operations.append(_delete_request(item, query))
            else:
                operations.append(_set_request(item, query, marshal, upsert=True))
        await self.rt.transact(store, operations, metadata, request.headers.get("traceparent", ""))
        return Response(status_code=204)

    async def query(self, request: Request) -> Response:
        # daprd hands the body to the query API unparsed: the store is looked up first.
        result = await self.rt.state.query(
            request.path_params["store"], await request.body(), request_metadata(request)
        )
        if not result.results:
            return Response(status_code=204)

        def answer() -> dict[str, Any]:  # daprd's QueryResponse struct
            out: dict[str, Any] = {
                "results": [
                    {"key": r.key, "data": _raw_json(r.data)} | ({"etag": r.etag} if r.etag else {})
                    for r in result.results
                ]
            }
            if result.token:
                out["token"] = result.token
            return out

        return _encoded(answer, "query")


def state_routes(runtime: Runtime, wrap: Callable[[Handler], Handler]) -> list[DaprRoute]:
    api = StateHttp(runtime)
    write = ["POST", "PUT"]
    return [
        DaprRoute("/v1.0/state/{store}", wrap(api.save), methods=write),
        DaprRoute("/v1.0/state/{store}/bulk", wrap(api.bulk), methods=write),
        DaprRoute("/v1.0/state/{store}/transaction", wrap(api.transaction), methods=write),
        DaprRoute("/v1.0-alpha1/state/{store}/query", wrap(api.query), methods=write),
        DaprRoute("/v1.0/state/{store}/{key}", wrap(api.get), methods=["GET"]),
        DaprRoute("/v1.0/state/{store}/{key}", wrap(api.delete), methods=["DELETE"]),
    ]
