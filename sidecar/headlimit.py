"""daprd's limit on an HTTP request's head: Go's 431 when the request line and headers are too long.

daprd's HTTP server sets Go's ``MaxHeaderBytes`` to ``--read-buffer-size`` (4 KiB by default).
Go lets a request's line and headers take that many bytes plus 4096 of slack, and answers a
longer head with a plain-text 431 before any handler runs, closing the connection. An invocation
forwarded by another sidecar (it carries ``dapr-caller-app-id``) was held to the limit where it
came in; its hop here stands for daprd's internal gRPC call, which has no such limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from sidecar.asgi import TEXT, send_response
from sidecar.invoke import FORWARDED_MARK

#: Go's http.DefaultMaxHeaderBytes, used when MaxHeaderBytes is 0 or less.
GO_DEFAULT_MAX_HEADER_BYTES = 1 << 20
#: What Go's server reads beyond MaxHeaderBytes before giving up (net/http "bufio slop").
GO_SLACK = 4096
_TOO_LARGE = b"431 Request Header Fields Too Large"
_FORWARDED = FORWARDED_MARK.encode()


def head_size(scope: Scope) -> int:
    """Bytes of the request line and headers as sent (``Name: value`` lines, CRLFs included)."""
    target = len(scope.get("raw_path") or scope["path"].encode())
    if scope["query_string"]:
        target += 1 + len(scope["query_string"])
    line = len(scope["method"]) + 1 + target + len(" HTTP/") + len(scope["http_version"]) + 2
    headers = sum(len(name) + 2 + len(value) + 2 for name, value in scope["headers"])
    return line + headers + 2


class MaxHeadSize:
    """Answer 431 to a request whose line and headers are longer than Go's server would read."""

    def __init__(self, app: ASGIApp, max_header_bytes: int) -> None:
        self.app = app
        allowed = max_header_bytes if max_header_bytes > 0 else GO_DEFAULT_MAX_HEADER_BYTES
        self.limit = allowed + GO_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and head_size(scope) > self.limit
            and not any(name == _FORWARDED for name, _ in scope["headers"])
        ):
            await send_response(send, 431, _TOO_LARGE, TEXT, [(b"connection", b"close")])
            return
        await self.app(scope, receive, send)
