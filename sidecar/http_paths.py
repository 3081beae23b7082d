"""Routing on the path as sent, as daprd's chi router does (pkg/api/http/server.go).

daprd matches routes against the escaped path, cleaned by Go's ``path.Clean`` (``//`` and
``.`` gone, ``..`` resolved, no trailing slash), then unescapes each route parameter with Go's
``url.QueryUnescape``. So ``/v1.0/state/store/a%2Fb`` reads the key ``a/b`` (a decoded path would
have one segment too many and match no state route), and ``+`` in a parameter is a space. A
path with a broken escape never gets that far: Go's server refuses the request line itself.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import unquote, unquote_plus

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sidecar.asgi import TEXT, send_response

_BROKEN_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def go_path_clean(path: str) -> str:
    """Go's ``path.Clean``: one slash between names, no ``.``, ``..`` resolved, no trailing
    slash; "" is "." (POSIX's normpath differs only in keeping two leading slashes)."""
    cleaned = posixpath.normpath(path) if path else "."
    return cleaned[1:] if cleaned.startswith("//") else cleaned


def decoded_path(scope: Scope) -> str:
    """The request path decoded once, as Go's ``r.URL.Path`` holds it (``%2F`` is a slash)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    return unquote(raw.decode("latin-1"), errors="replace")


class EscapedPaths:
    """Routes the app below on the raw path, cleaned; answers a broken escape as Go's server
    does. (Service invocation reads the method from the raw path itself.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes | None = scope.get("raw_path") if scope["type"] == "http" else None
        if raw is None:
            await self.app(scope, receive, send)
            return
        if _BROKEN_ESCAPE.search(raw):
            # net/http's answer to a request line it cannot parse.
            await send_response(send, 400, b"400 Bad Request", TEXT, [(b"connection", b"close")])
            return
        # httptools refuses bytes outside ASCII in the request line: the raw path is ASCII.
        path = go_path_clean(raw.decode("latin-1"))  # daprd's CleanPathMiddleware
        await self.app({**scope, "path": path}, receive, send)


class DaprRoute(Route):
    """A route whose parameters are unescaped after matching (``url.QueryUnescape``)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        params: dict[str, Any] | None = child.get("path_params")
        if params:
            child["path_params"] = {k: _unescape(v) for k, v in params.items()}
        return match, child


def _unescape(value: Any) -> Any:
    """Percent-escapes as UTF-8 (invalid bytes replaced, as in the rest of the HTTP API)."""
    return unquote_plus(value, errors="replace") if isinstance(value, str) else value
