"""The sidecar's HTTP client to its app: one pooled aiohttp session, daprd's headers.

Like daprd's app channel it sends ``dapr-api-token`` when ``APP_API_TOKEN`` is configured and
has no timeout of its own (resiliency policies bound the calls). With ``--app-max-concurrency``
at most that many invocations and deliveries are at the app at once, the others wait their turn;
health probes are not counted, as in daprd (pkg/channel/http/http_channel.go). An answer whose
status line and headers are longer than ``--read-buffer-size`` fails as under daprd, whose client
to the app has that as Go's ``MaxResponseHeaderBytes`` (pkg/runtime/channels).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp

#: Status, response headers, body.
AppResponse = tuple[int, Mapping[str, str], bytes]


#: Go's http.Transport limit on a response's head when MaxResponseHeaderBytes is 0.
GO_DEFAULT_MAX_RESPONSE_HEAD = 10 << 20


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
        self._token_headers = {"dapr-api-token": app_token} if app_token else {}
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
                auto_decompress=True,
                max_line_size=room,
                max_field_size=room,
                max_headers=max(128, room // 4),
            )
        return self._session

    async def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> AppResponse:
        """An invocation or delivery: it waits for a slot under ``--app-max-concurrency``."""
        if self._slots is None:
            return await self.send(method, path, headers, body)
        async with self._slots:
            return await self.send(method, path, headers, body)

    async def send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> AppResponse:
        """One request to the app, outside the concurrency limit (health probes)."""
        url = f"{self._base}/{path.lstrip('/')}"
        all_headers = {**headers, **self._token_headers}
        try:
            async with self._get_session().request(
                method, url, headers=all_headers, data=body
            ) as response:
                if response_head_size(response) > self._max_head:
                    raise AppUnreachableError(
                        f"{method} {url}: net/http: server response headers exceeded "
                        f"{self._max_head} bytes; aborted"
                    )
                content = await response.read()
                return response.status, dict(response.headers), content
        except (aiohttp.ClientError, OSError) as exc:
            raise AppUnreachableError(f"{method} {url}: {exc}") from exc

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the app port accepts TCP connections, as daprd does before subscribing."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.address, self.port), timeout=1.0
                )
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
