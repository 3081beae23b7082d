"""The sidecar's HTTP client to its app: one pooled aiohttp session, daprd's headers.

Like daprd's app channel it sends ``dapr-api-token`` when ``APP_API_TOKEN`` is configured and
has no timeout of its own (resiliency policies bound the calls). With ``--app-max-concurrency``
at most that many invocations and deliveries are at the app at once, the others wait their turn;
health probes are not counted, as in daprd (pkg/channel/http/http_channel.go). An answer whose
status line and headers are longer than ``--read-buffer-size`` fails as under daprd, whose client
to the app has that as Go's ``MaxResponseHeaderBytes`` (pkg/runtime/channels). Headers are
those of Go's client: the caller's own, plus a default User-Agent and, when the caller accepts no
encoding of its own, ``Accept-Encoding: gzip`` with the gzip answer handed back decompressed.
Redirects are not followed: daprd's client has ``CheckRedirect`` return ``ErrUseLastResponse``
(pkg/runtime/channels/channels.go), so a 3xx and its Location are the app's answer as they are.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Iterable, Mapping

import aiohttp

#: Header fields in order, a name repeated as often as it was sent (two Set-Cookie, say).
Headers = list[tuple[str, str]]
#: Status, response headers, body.
AppResponse = tuple[int, Headers, bytes]


#: Go's http.Transport limit on a response's head when MaxResponseHeaderBytes is 0.
GO_DEFAULT_MAX_RESPONSE_HEAD = 10 << 20
#: What Go's http.Client sends as User-Agent when the request has none.
GO_USER_AGENT = "Go-http-client/1.1"
#: Headers aiohttp would add on its own; Go's client adds none of them (or its own, below).
_AIOHTTP_AUTO_HEADERS = ("User-Agent", "Content-Type", "Accept", "Accept-Encoding")


def header_list(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
    """Header fields as (name, value) pairs, whichever form they come in."""
    return list(headers.items() if isinstance(headers, Mapping) else headers)


def replaced(headers: Headers, name: str, value: str) -> Headers:
    """``headers`` with every field called ``name`` (in any case) replaced by one."""
    wanted = name.lower()
    return [(k, v) for k, v in headers if k.lower() != wanted] + [(name, value)]


def go_request_headers(method: str, headers: Headers) -> tuple[Headers, bool]:
    """The headers Go's http.Transport sends, and whether it asked for gzip itself.

    Go names itself when the request has no User-Agent, and asks for gzip when the request has
    no Accept-Encoding nor Range and is no HEAD: only then does it decompress the answer.
    """
    sent = list(headers)
    present = {key.lower(): value for key, value in headers}
    if "user-agent" not in present:
        sent.append(("User-Agent", GO_USER_AGENT))
    asks_gzip = not present.get("accept-encoding") and not present.get("range")
    asks_gzip = asks_gzip and method.upper() != "HEAD"
    if asks_gzip:
        sent = replaced(sent, "Accept-Encoding", "gzip")
    return sent, asks_gzip


def gunzipped(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    """A gzip answer to Go's own gzip request: the plain body, without the Content-Encoding
    and Content-Length that described the compressed one (raises ValueError if broken)."""
    encoding = next((v for k, v in headers if k.lower() == "content-encoding"), "")
    if encoding.lower() != "gzip" or not body:
        return headers, body
    try:
        plain = gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"gzip: {exc}") from None
    dropped = ("content-encoding", "content-length")
    return [(k, v) for k, v in headers if k.lower() not in dropped], plain


def response_head_size(response: aiohttp.ClientResponse) -> int:
    """Bytes of the status line and headers as the app sent them (CRLFs included)."""
    major, minor = response.version or (1, 1)
    line = len(f"HTTP/{major}.{minor} {response.status} {response.reason or ''}\r\n")
    return line + sum(len(k) + 2 + len(v) + 2 for k, v in response.raw_headers) + 2


class AppUnreachableError(Exception):
    """The app did not answer (refused, reset, broken reply); daprd treats this as retriable."""


class AppChannel:
    def __init__(
        self,
        address: str,
        port: int,
        app_token: str | None,
        *,
        max_connections: int = 100,
        timeout: float | None = None,
        max_concurrency: int = -1,
        max_header_bytes: int = 4 << 10,
    ) -> None:
        self.address = address
        self.port = port
        self._base = f"http://{address}:{port}"
        self._app_token = app_token or None
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        #: daprd limits only for a value above 0
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
        #: Go's Transport takes 0 (or less, here) as its default, 10 MiB
        self._max_head = max_header_bytes if max_header_bytes > 0 else GO_DEFAULT_MAX_RESPONSE_HEAD

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp sessions must be born inside the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
            # Go bounds only the head's total size: aiohttp's own per-line and count limits are
            # kept out of its way.
            room = max(self._max_head, 8190)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=_AIOHTTP_AUTO_HEADERS,
                max_line_size=room,
                max_field_size=room,
                max_headers=max(128, room // 4),
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
    ) -> AppResponse:
        """An invocation or delivery: it waits for a slot under ``--app-max-concurrency``."""
        if self._slots is None:
            return await self.send(method, path, headers, body)
        async with self._slots:
            return await self.send(method, path, headers, body)

    async def send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
    ) -> AppResponse:
        """One request to the app, outside the concurrency limit (health probes); a header
        sent several times reaches the app several times, as each of the app's does back."""
        url = f"{self._base}/{path.lstrip('/')}"
        pairs = header_list(headers)
        if self._app_token is not None:
            pairs = replaced(pairs, "dapr-api-token", self._app_token)
        sent, asks_gzip = go_request_headers(method, pairs)
        try:
            async with self._get_session().request(
                method, url, headers=sent, data=body, allow_redirects=False
            ) as response:
                if response_head_size(response) > self._max_head:
                    raise AppUnreachableError(
                        f"{method} {url}: net/http: server response headers exceeded "
                        f"{self._max_head} bytes; aborted"
                    )
                content = await response.read()
                reply_headers = list(response.headers.items())
        except (aiohttp.ClientError, OSError) as exc:
            raise AppUnreachableError(f"{method} {url}: {exc}") from exc
        if not asks_gzip:
            return response.status, reply_headers, content
        try:
            reply_headers, content = gunzipped(reply_headers, content)
        except ValueError as exc:
            raise AppUnreachableError(f"{method} {url}: {exc}") from None
        return response.status, reply_headers, content

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the app port accepts TCP connections, as daprd does before subscribing."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with asyncio.timeout(1.0):
                    _, writer = await asyncio.open_connection(self.address, self.port)
            except (OSError, TimeoutError):
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"app port {self.address}:{self.port} not open within {timeout}s"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            return

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
