"""Answering below the framework: one complete ASGI response, for the middlewares that refuse a
request before it reaches a route."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Send

TEXT = b"text/plain; charset=utf-8"


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                *headers,
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
