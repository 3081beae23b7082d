"""A small real app whose answers test how the sidecar reads them: redirects, subscriber
statuses in odd letter case, and the headers an invocation arrives with.

Env: APP_PORT; SUBSCRIPTIONS (the raw text answered on GET /dapr/subscribe).
Routes: /answer/redirect answers 302 to /answer/landing; /answer/drop-upper answers
``{"Status":"DROP"}``, /answer/retry-upper ``{"STATUS":"RETRY"}``; any other path answers 200
with an echo (method, path, headers as a list, body). Every call but GET /calls and
GET /dapr/subscribe is recorded, and GET /calls lists them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CALLS: list[dict[str, object]] = []
LOCK = threading.Lock()
FIXED = {
    "/answer/drop-upper": b'{"Status":"DROP"}',
    "/answer/retry-upper": b'{"STATUS":"RETRY"}',
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(self, status: int, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.partition("?")[0]
        if path == "/dapr/subscribe":
            self._answer(200, os.environ.get("SUBSCRIPTIONS", "[]").encode())
            return
        if path == "/calls":
            with LOCK:
                self._answer(200, json.dumps(CALLS).encode())
            return
        call = {
            "method": self.command,
            "path": path,
            "header_list": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
        }
        with LOCK:
            CALLS.append(call)
        if path == "/answer/redirect":
            self._answer(302, b'{"moved":true}', extra=(("Location", "/answer/landing"),))
            return
        self._answer(200, FIXED.get(path, json.dumps(call).encode()))

    do_GET = do_POST = do_PUT = do_DELETE = _handle


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler)
    sys.stdout.write(f"answers app pid {os.getpid()} listening on {server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
