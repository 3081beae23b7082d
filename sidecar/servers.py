"""The two listeners of a sidecar: uvicorn for the HTTP API and grpc.aio for the gRPC API.

Both bind before the sidecar reports itself started, so a taken port fails startup at once, and
neither installs signal handlers: the runtime owns SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import grpc
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HTTP_STOP_GRACE = 5.0
_GRPC_STOP_GRACE = 5.0


@functools.lru_cache(maxsize=2)
def _http_date(second: int) -> bytes:
    return formatdate(second, usegmt=True).encode()


class GoDateHeader:
    """Go's HTTP server adds ``Date`` only to an answer that has none: an invocation answers
    with the app's own (uvicorn's date header, which it adds to every answer, is off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"date" for name, _ in headers):
                    headers.insert(0, (b"date", _http_date(int(time.time()))))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, app: Any, host: str, port: int) -> None:
        self.where = f"HTTP {host}:{port}"
        self._host = host
        self._port = port
        self._server = _QuietServer(
            uvicorn.Config(
                GoDateHeader(app),
                lifespan="off",
                access_log=False,
                log_level="warning",
                http="httptools",
                loop="none",
                server_header=False,
                date_header=False,
                timeout_keep_alive=60,
                backlog=1024,
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted connections of a
        # socket whose proto says TCP, and without it every response waits ~40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"the HTTP server on {self.where} stopped during startup")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            async with asyncio.timeout(_HTTP_STOP_GRACE):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._server.force_exit = True
            await self._task


class GrpcServer:
    def __init__(self, server: grpc.aio.Server, host: str, port: int) -> None:
        self.where = f"gRPC {host}:{port}"
        self._server = server
        self._address = f"{host}:{port}"

    async def start(self) -> None:
        try:
            bound = self._server.add_insecure_port(self._address)
        except RuntimeError as exc:
            raise OSError(str(exc)) from None
        if bound == 0:
            raise OSError(f"cannot bind {self._address}")
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(_GRPC_STOP_GRACE)
