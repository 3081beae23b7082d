"""A tiny real app for sidecar tests: subscriptions, an event log and an echo endpoint.

Env: APP_PORT; SUBSCRIPTIONS (answered as is on GET /dapr/subscribe; unset = 404);
SUBSCRIBE_GARBLED (the first N of those requests, or ``all``, get a reply that is not HTTP, a
transport error for the client); GET /subscribe-calls lists the headers of each one received.
Routes: POST /events/* records the body and answers 200; GET /received lists the bodies;
GET /healthz answers 200, or 503 after POST /health/down (until POST /health/up);
any other path echoes method, path, query, headers and body as JSON; /status/NNN answers NNN
(with the body of query ``body=...`` if given);
/slow/MS answers after MS milliseconds, and GET /peak tells (and resets) how many were in at once;
/bighead/N answers with an X-Big header of N bytes; /gzip echoes as any path does, gzipped (with
Content-Encoding: gzip) when the request accepts gzip; /cookies echoes with two Set-Cookie
headers. The echo's ``header_list`` keeps a header sent twice twice. /flaky/KEY/N/CODE answers
CODE to the first N calls with that KEY, then 200 with the number of calls so far.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

RECEIVED: list[object] = []
LOCK = threading.Lock()
HEALTHY = threading.Event()
HEALTHY.set()
SLOW = {"in": 0, "peak": 0}
FLAKY: dict[str, int] = {}
SUBSCRIBE_CALLS: list[dict[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        big: int = 0,
        encoding: str = "",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status)
        for name, value in extra:
            self.send_header(name, value)
        if big:
            self.send_header("X-Big", "b" * big)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Tiny-App", "yes")
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._body()
        path, _, query = self.path.partition("?")
        if path == "/dapr/subscribe":
            with LOCK:
                SUBSCRIBE_CALLS.append({k.lower(): v for k, v in self.headers.items()})
                calls = len(SUBSCRIBE_CALLS)
            garbled = os.environ.get("SUBSCRIBE_GARBLED", "0")
            if garbled == "all" or calls <= int(garbled):
                # Not a dropped connection: aiohttp sends an idempotent request again once
                # when the server hangs up on it, Go's client only on a reused connection.
                self.wfile.write(b"garbage\r\n\r\n")
                self.close_connection = True
                return
            subs = os.environ.get("SUBSCRIPTIONS")
            if subs is None:
                self._answer(404, b"not found", "text/plain")
            else:
                self._answer(200, subs.encode())
            return
        if path.startswith("/events/"):
            with LOCK:
                RECEIVED.append(
                    {
                        "path": path,
                        "event": json.loads(body),
                        "raw": body.decode("utf-8", "replace"),  #: the body as it came
                        "content_type": self.headers.get("Content-Type"),
                    }
                )
            self._answer(200, b'{"status":"SUCCESS"}')
            return
        if path == "/healthz":
            self._answer(200 if HEALTHY.is_set() else 503, b"{}")
            return
        if path in ("/health/down", "/health/up"):
            (HEALTHY.clear if path == "/health/down" else HEALTHY.set)()
            self._answer(200, b"{}")
            return
        if path == "/subscribe-calls":
            with LOCK:
                self._answer(200, json.dumps(SUBSCRIBE_CALLS).encode())
            return
        if path == "/received":
            with LOCK:
                self._answer(200, json.dumps(RECEIVED).encode())
            return
        if path.startswith("/slow/"):
            with LOCK:
                SLOW["in"] += 1
                SLOW["peak"] = max(SLOW["peak"], SLOW["in"])
            time.sleep(int(path.rsplit("/", 1)[1]) / 1000)
            with LOCK:
                SLOW["in"] -= 1
            self._answer(200, b"{}")
            return
        if path.startswith("/bighead/"):
            self._answer(200, b"{}", big=int(path.rsplit("/", 1)[1]))
            return
        if path == "/peak":
            with LOCK:
                peak, SLOW["peak"] = SLOW["peak"], 0
            self._answer(200, json.dumps(peak).encode())
            return
        if path.startswith("/flaky/"):
            _, _, key, failures, code = path.split("/")
            with LOCK:
                FLAKY[key] = calls = FLAKY.get(key, 0) + 1
            failing = calls <= int(failures)
            self._answer(int(code) if failing else 200, json.dumps({"calls": calls}).encode())
            return
        if path.startswith("/status/"):
            reply = unquote(query[5:]).encode() if query.startswith("body=") else b'{"failed":true}'
            self._answer(int(path.rsplit("/", 1)[1]), reply)
            return
        echo = {
            "method": self.command,
            "path": path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "header_list": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
        }
        if path == "/cookies":
            cookies = (("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"))
            self._answer(200, json.dumps(echo).encode(), extra=cookies)
            return
        if path == "/gzip" and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            self._answer(200, gzip.compress(json.dumps(echo).encode()), encoding="gzip")
            return
        self._answer(200, json.dumps(echo).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler)
    app_id = os.environ.get("APP_ID", "")
    sys.stdout.write(f"tiny app {app_id} pid {os.getpid()} listening on {server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
