"""HEAD wherever GET is served, and the ``Allow`` header of a 405, for both services.

RFC 9110 (section 9.1) wants every general-purpose server to support GET and HEAD; FastAPI's
routes answer only the methods they declare, so ``HEAD /healthz`` would be a 405.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware answering HEAD as GET without the body (RFC 9110 section 9.3.2).

    Add it last, so that it is outermost: everything below sees a GET. The GET's headers are
    sent as they are, ``Content-Length`` included. A streamed answer (Server-Sent Events) ends
    once its headers are out: the app is told the client went away.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def head_receive() -> Message:
            if ended:
                return {"type": "http.disconnect"}
            return await receive()

        async def head_send(message: Message) -> None:
            nonlocal ended
            if message["type"] != "http.response.body":
                await send(message)
            elif not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, head_receive, head_send)


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """Every method served at the requested path, for the ``Allow`` of a 405 (RFC 9110
    section 15.5.6): Starlette names only those of the first route whose path matched."""
    methods: set[str] = set()
    for route in routes:
        served = getattr(route, "methods", None)
        if served and route.matches(scope)[0] is not Match.NONE:
            methods.update(served)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))
