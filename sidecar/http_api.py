"""daprd's HTTP API (``/v1.0/...``) on Starlette: routes, bodies and status codes as daprd's.

Handlers only parse and format; the state, publish, invoke and metadata logic lives in the
runtime's services. Any route that matches nothing is service invocation through the
``dapr-app-id`` header or ``dapr-app-id:<app>`` Basic credentials, as in daprd
(pkg/api/http/directmessaging.go).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sidecar import cloudevents, json_reader
from sidecar.api_logging import HttpApiLogging
from sidecar.asgi import TEXT, send_response
from sidecar.bodylimit import MaxBodySize
from sidecar.errors import DaprError
from sidecar.go_marshal import OutOfRange, as_float64, encoded, marshal
from sidecar.headlimit import MaxHeadSize
from sidecar.http_paths import DaprRoute, EscapedPaths, decoded_path
from sidecar.http_state import request_metadata, state_routes
from sidecar.invoke import InvokeResult
from sidecar.invoke_method import http_target_and_method
from sidecar.metadata import metadata_json
from sidecar.publishing import PublishEntry, bulk_body_unreadable, bulk_event_unconvertible

if TYPE_CHECKING:
    from sidecar.runtime import Runtime

_ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
_JSON = "application/json"
_TOKEN_FREE = frozenset({"/v1.0/healthz", "/v1.0/healthz/outbound"})

Handler = Callable[[Request], Awaitable[Response]]


def error_response(err: DaprError) -> Response:
    """daprd's respondWithError: the error's json.Marshal (struct order, HTML-safe escapes)."""
    return Response(marshal(err.http_body(), sort_keys=False), err.http_status, media_type=_JSON)


def empty() -> Response:
    return Response(status_code=204)


def dapr_errors(handler: Handler) -> Handler:
    """Render DaprError as daprd's JSON error body."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except DaprError as err:
            return error_response(err)

    return wrapped


class ApiTokenMiddleware:
    """Every API call but healthz needs ``dapr-api-token`` (pkg/api/http/middlewares.go)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((v for k, v in scope["headers"] if k == b"dapr-api-token"), None)
            if given != self.token and not self._excluded(scope):
                nosniff = [(b"x-content-type-options", b"nosniff")]  # Go's http.Error
                await send_response(send, 401, b"invalid api token\n", TEXT, nosniff)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _excluded(scope: Scope) -> bool:
        return scope["method"] == "GET" and scope["path"].rstrip("/") in _TOKEN_FREE


class HttpApi:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def healthz(self, request: Request) -> Response:
        """Ready once the app's subscriptions are delivered (ERR_HEALTH_NOT_READY before)."""
        if not self.rt.health.ready:
            return error_response(
                DaprError(
                    "ERR_HEALTH_NOT_READY",
                    f"dapr is not ready: [{self.rt.health.not_ready_reason}]",
                    500,
                    grpc.StatusCode.INTERNAL,
                )
            )
        app_id = request.query_params.get("appid")
        if app_id is not None and app_id != self.rt.app_id:
            return error_response(
                DaprError(
                    "ERR_HEALTH_APPID_NOT_MATCH",
                    "dapr app-id does not match",
                    500,
                    grpc.StatusCode.INTERNAL,
                )
            )
        return empty()

    async def healthz_outbound(self, request: Request) -> Response:
        """Ready once components are loaded and the APIs are served."""
        if not self.rt.health.outbound_ready:
            return error_response(
                DaprError(
                    "ERR_OUTBOUND_HEALTH_NOT_READY",
                    "dapr outbound is not ready",
                    500,
                    grpc.StatusCode.INTERNAL,
                )
            )
        return empty()

    async def get_metadata(self, request: Request) -> Response:
        body = encoded(metadata_json(self.rt.metadata()), sort_keys=False)
        return Response(body, media_type=_JSON)

    async def put_metadata(self, request: Request) -> Response:
        body = await request.body()
        self.rt.extended_metadata[request.path_params["key"]] = body.decode("utf-8", "replace")
        return empty()

    async def shutdown(self, request: Request) -> Response:
        # Answer first; the runtime then stops gracefully, as daprd's Shutdown API does.
        asyncio.get_running_loop().call_later(0.05, self.rt.request_shutdown)
        return empty()

    async def publish(self, request: Request) -> Response:
        """Publish one event; as daprd's onPublish, pubsub and topic are checked first."""
        pubsub, topic = request.path_params["pubsub"], request.path_params["topic"]
        metadata = request_metadata(request)
        self.rt.publisher.validate(pubsub, topic, metadata)
        body = await request.body()
        await self.rt.publisher.publish(
            pubsub,
            topic,
            body,
            request.headers.get("content-type", ""),
            metadata,
            traceparent=request.headers.get("traceparent", ""),
            tracestate=request.headers.get("tracestate", ""),
        )
        return empty()

    async def bulk_publish(self, request: Request) -> Response:
        """As daprd's onBulkPublish: the pubsub, topic and metadata are checked before the
        body is read, then each entry's event is turned into bytes."""
        pubsub, topic = request.path_params["pubsub"], request.path_params["topic"]
        metadata = request_metadata(request)
        self.rt.publisher.validate(pubsub, topic, metadata)
        app_id = self.rt.app_id
        try:
            items = _bulk_items(await request.body())
        except ValueError as exc:
            raise bulk_body_unreadable(pubsub, topic, app_id, exc) from None
        entries = []
        for item in items:
            try:
                entries.append(_bulk_entry(item))
            except ValueError as exc:
                raise bulk_event_unconvertible(pubsub, topic, app_id, exc) from None
        failed = await self.rt.publisher.bulk_publish(
            pubsub,
            topic,
            entries,
            metadata,
            traceparent=request.headers.get("traceparent", ""),
        )
        if not failed:
            return empty()
        body = {
            "failedEntries": [
                {"entryId": f.entry_id} | ({"error": f.error} if f.error else {}) for f in failed
            ],
            "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
        }
        # daprd's json.Marshal of its BulkPublishResponse struct (no newline).
        return Response(marshal(body, sort_keys=False), 500, media_type=_JSON)

    async def get_secret(self, request: Request) -> Response:
        params = request.path_params
        data = await self.rt.secrets.get(params["store"], params["key"], request_metadata(request))
        return Response(encoded(data), 200, media_type=_JSON)

    async def bulk_secrets(self, request: Request) -> Response:
        data = await self.rt.secrets.bulk_get(
            request.path_params["store"], request_metadata(request)
        )
        return Response(encoded(data), 200, media_type=_JSON)

    async def invoke(self, request: Request) -> Response:
        """``/v1.0/invoke/{app-id}/method/{method}``, or any path with a dapr-app-id header."""
        target, method = _target_and_method(request)
        if not target:
            return error_response(
                DaprError(
                    "ERR_DIRECT_INVOKE",
                    "failed getting app id either from the URL path or the header dapr-app-id",
                    404,
                    grpc.StatusCode.NOT_FOUND,
                )
            )
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        result = await self.rt.invoker.invoke(
            target,
            method,
            request.method,
            request.scope["query_string"].decode("latin-1"),
            headers,
            await request.body(),
        )
        return _invoke_response(result)


def _target_and_method(request: Request) -> tuple[str, str]:
    """From the decoded path, as daprd 1.18 reads it (Go's r.URL.Path)."""
    headers = request.headers
    return http_target_and_method(
        decoded_path(request.scope),
        headers.get("dapr-app-id", ""),
        headers.get("authorization", ""),
    )


def _invoke_response(result: InvokeResult) -> Response:
    response = Response(result.body, result.status)
    response.raw_headers.extend(
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in result.headers
    )
    return response


def _bulk_items(body: bytes) -> list[dict[str, Any]]:
    """The entries of a bulk publish body, shaped as Go decodes them into daprd's struct
    (raises ValueError): ``null`` is no entries; entryId and contentType are strings, metadata
    an object of strings. daprd's decoder makes every number of an event a float64."""
    try:
        raw = json_reader.go_decode(body, as_float64)
    except OutOfRange as exc:
        raise OutOfRange(exc.literal, "struct field bulkPublishMessageEntry.event") from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("expected a JSON array of entries")
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("each entry must be an object")
        for name in ("entryId", "contentType"):
            if not isinstance(item.get(name, ""), str | None):
                raise ValueError(f"entry field {name} must be a string")
        metadata = item.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or not all(isinstance(v, str | None) for v in metadata.values())
        ):
            raise ValueError("entry metadata must be an object of strings")
    return raw


def _bulk_entry(item: dict[str, Any]) -> PublishEntry:
    """One entry of a bulk publish body, its event turned into bytes like daprd's
    ConvertEventToBytes (raises ValueError)."""
    content_type = str(item.get("contentType") or "")
    event = item.get("event")
    if cloudevents.is_binary_content_type(content_type):
        if not isinstance(event, str):
            raise ValueError("error: mismatch between contentType and event")
        data = base64.b64decode(event, validate=True)
    elif cloudevents.is_json_content_type(content_type) or (
        cloudevents.is_cloudevent_content_type(content_type)
    ):
        data = marshal(event)
    elif isinstance(event, str):
        data = event.encode()
    else:
        raise ValueError("error: mismatch between contentType and event")
    metadata = item.get("metadata")
    return PublishEntry(
        entry_id=str(item.get("entryId") or ""),
        data=data,
        content_type=content_type,
        # Absent or null is Go's nil map, {} an empty one: daprd merges only into the latter.
        metadata=None if metadata is None else {str(k): v or "" for k, v in metadata.items()},
    )


def create_http_app(runtime: Runtime) -> ASGIApp:
    api = HttpApi(runtime)
    routes = [
        DaprRoute("/v1.0/healthz", api.healthz, methods=["GET"]),
        DaprRoute("/v1.0/healthz/outbound", api.healthz_outbound, methods=["GET"]),
        DaprRoute("/v1.0/metadata", api.get_metadata, methods=["GET"]),
        DaprRoute("/v1.0/metadata/{key}", api.put_metadata, methods=["PUT"]),
        DaprRoute("/v1.0/shutdown", api.shutdown, methods=["POST"]),
        *state_routes(runtime, dapr_errors),
        DaprRoute("/v1.0/secrets/{store}/bulk", dapr_errors(api.bulk_secrets), methods=["GET"]),
        DaprRoute("/v1.0/secrets/{store}/{key}", dapr_errors(api.get_secret), methods=["GET"]),
        DaprRoute(
            "/v1.0-alpha1/publish/bulk/{pubsub}/{topic:path}",
            dapr_errors(api.bulk_publish),
            methods=["POST", "PUT"],
        ),
        DaprRoute(
            "/v1.0/publish/bulk/{pubsub}/{topic:path}",
            dapr_errors(api.bulk_publish),
            methods=["POST", "PUT"],
        ),
        DaprRoute(
            "/v1.0/publish/{pubsub}/{topic:path}", dapr_errors(api.publish), methods=["POST", "PUT"]
        ),
        DaprRoute("/{path:path}", dapr_errors(api.invoke), methods=_ALL_METHODS),
    ]
    config = runtime.config
    app: ASGIApp = EscapedPaths(Starlette(routes=routes))
    if config.max_body_bytes > 0:  # daprd adds no limit for 0 or less
        app = MaxBodySize(app, config.max_body_bytes)
    if config.api_logging:  # after authentication, as in daprd: refused calls go unlogged
        app = HttpApiLogging(app)
    if config.api_token:
        app = ApiTokenMiddleware(app, config.api_token)
    return MaxHeadSize(app, config.read_buffer_bytes)
