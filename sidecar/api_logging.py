"""daprd's API logging (``--enable-api-logging``): one info line per HTTP or gRPC API call.

HTTP (pkg/api/http/server.go useAPILogging): "HTTP API Called" with ``method`` (verb and
decoded path), ``code``, ``size`` (response body bytes), ``duration`` (whole milliseconds) and
``useragent``, under scope ``dapr.runtime.http-info``. gRPC (pkg/api/grpc/server.go
printAPILog): "gRPC API Called" with the full method name, ``code`` (the status number),
``duration`` and ``useragent``, under ``dapr.runtime.grpc.api-info``. Both scopes log at info
whatever ``--log-level`` says. Calls refused for their API token are not logged, as in daprd,
whose logging runs after authentication; nor are gRPC methods with streamed answers (this
sidecar implements none).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.http_paths import decoded_path

HTTP_SCOPE = "dapr.runtime.http-info"
GRPC_SCOPE = "dapr.runtime.grpc.api-info"
API_LOG_SCOPES = (HTTP_SCOPE, GRPC_SCOPE)

_http_log = logging.getLogger(HTTP_SCOPE)
_grpc_log = logging.getLogger(GRPC_SCOPE)


def _elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


class HttpApiLogging:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        answer = {"code": 0, "size": 0}

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["code"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["size"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            fields: dict[str, Any] = {
                "duration": _elapsed_ms(start),
                "method": f"{scope['method']} {decoded_path(scope)}",
            }
            agent = next((v for k, v in scope["headers"] if k == b"user-agent"), None)
            if agent:
                fields["useragent"] = agent.decode("latin-1")
            if answer["code"]:
                fields |= answer
            _http_log.info("HTTP API Called", extra={"fields": fields})


class GrpcApiLogging(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or handler.response_streaming:
            return handler
        behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary
        method = details.method
        agent = next((v for k, v in details.invocation_metadata or () if k == "user-agent"), None)

        async def logged(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.monotonic()
            code = grpc.StatusCode.UNKNOWN
            try:
                result = await behavior(request, context)
                code = context.code() or grpc.StatusCode.OK
                return result
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN  # abort() set it first
                raise
            finally:
                fields: dict[str, Any] = {
                    "method": method,
                    "duration": _elapsed_ms(start),
                    "code": code.value[0],
                }
                if agent:
                    fields["useragent"] = agent
                _grpc_log.info("gRPC API Called", extra={"fields": fields})

        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return factory(
            logged,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
