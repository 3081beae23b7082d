"""daprd's request body limit (``--max-body-size``, 4 MiB by default) on the HTTP API.

daprd reads at most that many bytes of a body and fails the call with ERR_BODY_READ
(pkg/api/http/middlewares.go MaxBodySizeMiddleware, messages.ErrBodyRead); without it a client
could make the sidecar buffer any amount of memory. The gRPC server has the same limit.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.asgi import send_response


class MaxBodySize:
    """Answer 400 ERR_BODY_READ to a request whose body is longer than ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit():
            # The server holds the body to its declared length, so only that needs checking.
            if int(length) > self.limit:
                await _too_large(send)
            else:
                await self.app(scope, receive, send)
            return
        # Chunked: read it here (the API handlers read whole bodies anyway), up to the limit.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await _too_large(send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _too_large(send: Send) -> None:
    body = orjson.dumps(
        {"errorCode": "ERR_BODY_READ", "message": "failed to read request body: stream too large"}
    )
    await send_response(send, 400, body, b"application/json")
