"""The HTTP state API (``/v1.0/state/...``): parse daprd's JSON bodies, format its answers.

Values arrive as JSON and are stored re-serialized (keys sorted, as Go's encoding/json writes a
decoded object); a missing key answers 204 with no body (contract section 3).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response

from sidecar import cloudevents
from sidecar.errors import DaprError
from sidecar.http_paths import DaprRoute
from sidecar.state.base import Concurrency, DeleteRequest, SetRequest
from sidecar.state.errors import unsupported_operation

if TYPE_CHECKING:
    from sidecar.runtime import Runtime

_JSON = "application/json"
Handler = Callable[[Request], Awaitable[Response]]


def _malformed(exc: object) -> DaprError:
    return DaprError(
        "ERR_MALFORMED_REQUEST",
        f"failed deserializing HTTP body: {exc}",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def _metadata(request: Request) -> dict[str, str]:
    """The ``metadata.*`` query parameters; a repeated one by its first value, as daprd's
    getMetadataFromRequest reads Go's url.Values."""
    if not request.scope["query_string"]:
        return {}
    metadata: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata."):
            metadata.setdefault(key[9:], value)
    return metadata


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return cloudevents.fast_loads(raw)
    except ValueError as exc:
        raise _malformed(exc) from None


def _concurrency(value: Any) -> Concurrency:
    return Concurrency.FIRST_WRITE if value == "first-write" else Concurrency.LAST_WRITE


def _options_concurrency(options: Any) -> Concurrency:
    return _concurrency(options.get("concurrency") if isinstance(options, dict) else None)


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _malformed(f"{what} must be an object of strings")
    return {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in value.items()}


def _etag(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def value_bytes(value: Any) -> bytes:
    """A JSON value as daprd stores it from HTTP (Go's json.Marshal of the decoded value)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _item(item: Any, extra_metadata: Mapping[str, str] | None) -> tuple[str, dict[str, str]]:
    if not isinstance(item, dict):
        raise _malformed("each state item must be an object")
    key = item.get("key", "")
    if not isinstance(key, str):
        raise _malformed("state item key must be a string")
    metadata = _string_map(item.get("metadata"), "metadata")
    if extra_metadata:
        metadata.update(extra_metadata)
    return key, metadata


def set_request(item: Any, extra_metadata: Mapping[str, str] | None = None) -> SetRequest:
    """One ``{key, value, etag, metadata, options}`` object of a save or transaction body."""
    key, metadata = _item(item, extra_metadata)
    return SetRequest(
        key=key,
        value=value_bytes(item.get("value")),
        etag=_etag(item.get("etag")),
        metadata=metadata,
        concurrency=_options_concurrency(item.get("options")),
        is_json=True,
    )


def delete_request(item: Any, extra_metadata: Mapping[str, str] | None = None) -> DeleteRequest:
    key, metadata = _item(item, extra_metadata)
    return DeleteRequest(
        key=key,
        etag=_etag(item.get("etag")),
        metadata=metadata,
        concurrency=_options_concurrency(item.get("options")),
    )


def _raw_json(data: bytes) -> Any:
    """Stored bytes embedded as JSON when they are JSON, else as a string."""
    try:
        cloudevents.fast_loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")
    return orjson.Fragment(data)


class StateHttp:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def get(self, request: Request) -> Response:
        params = request.path_params
        found = await self.rt.state.get(params["store"], params["key"], _metadata(request))
        if found is None:
            return Response(status_code=204)
        response = Response(found.data, media_type=_JSON)
        if found.etag:
            response.headers["ETag"] = found.etag
        for key, value in found.metadata.items():
            response.headers[f"metadata.{key}"] = value
        return response

    async def save(self, request: Request) -> Response:
        items = await _body(request)
        if not isinstance(items, list):
            raise _malformed("expected a JSON array of state items")
        await self.rt.state.save(request.path_params["store"], [set_request(i) for i in items])
        return Response(status_code=204)

    async def delete(self, request: Request) -> Response:
        params = request.path_params
        query = request.query_params
        await self.rt.state.delete(
            params["store"],
            params["key"],
            _etag(request.headers.get("if-match")),
            _metadata(request),
            _concurrency(query.get("concurrency")),
        )
        return Response(status_code=204)

    async def bulk(self, request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("keys") or [], list):
            raise _malformed("expected an object with a keys array")
        keys = body.get("keys") or []
        parallelism = body.get("parallelism")
        # daprd decodes into BulkGetRequest{Keys []string, Parallelism int}: other types fail.
        if not all(isinstance(k, str) for k in keys):
            raise _malformed("keys must be strings")
        if parallelism is not None and type(parallelism) is not int:
            raise _malformed("parallelism must be an integer")
        items = await self.rt.state.bulk_get(request.path_params["store"], keys, _metadata(request))
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
                    entry["metadata"] = dict(item.response.metadata)
            out.append(entry)
        return Response(orjson.dumps(out), media_type=_JSON)

    async def transaction(self, request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("operations", []), list):
            raise _malformed("expected an object with an operations array")
        # daprd's onPostStateTransaction: each operation gets the query's metadata.* on top of
        # its own; the body's metadata (the query's on top) is the transaction's only.
        query = _metadata(request)
        metadata = {**_string_map(body.get("metadata"), "metadata"), **query}
        operations: list[SetRequest | DeleteRequest] = []
        for op in body.get("operations") or []:
            if not isinstance(op, dict):
                raise _malformed("each operation must be an object")
            kind = op.get("operation")
            if kind == "upsert":
                operations.append(set_request(op.get("request"), query))
            elif kind == "delete":
                operations.append(delete_request(op.get("request"), query))
            else:
                raise unsupported_operation(kind)
        await self.rt.transact(
            request.path_params["store"],
            operations,
            metadata,
            request.headers.get("traceparent", ""),
        )
        return Response(status_code=204)

    async def query(self, request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise _malformed("expected a JSON object query")
        result = await self.rt.state.query(request.path_params["store"], body, _metadata(request))
        if not result.results:
            return Response(status_code=204)
        out: dict[str, Any] = {
            "results": [
                {"key": r.key, "data": _raw_json(r.data), **({"etag": r.etag} if r.etag else {})}
                for r in result.results
            ]
        }
        if result.token:
            out["token"] = result.token
        return Response(orjson.dumps(out), media_type=_JSON)


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
