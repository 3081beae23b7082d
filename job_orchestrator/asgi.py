"""Plain ASGI helpers for the paths served below FastAPI (long polls, sidecar deliveries,
submissions)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import Message, Receive, Send


async def read_body(receive: Receive) -> bytes:
    """The whole request body (b"" when the client went away before sending it)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replayed(body: bytes, receive: Receive) -> Receive:
    """``receive`` with ``body``, already read by ``read_body``, given back first: for the app a
    request goes on to when a path below FastAPI does not take it."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def disconnected(receive: Receive) -> None:
    """Returns once the client has gone away (what is left of the request body is dropped).

    The server says so only through ``receive``: uvicorn neither cancels the request nor
    fails a send to a closed connection.
    """
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_json(
    send: Send,
    status: int,
    body: Any,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> None:
    """One complete response with ``body`` as compact JSON.

    NaN or Infinity in ``body`` is a ValueError, as in Starlette's JSONResponse: no invalid JSON.
    """
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    raw_headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
