"""The Dapr client in use, replaced by a fresh one once a restarted sidecar answers again.

While the sidecar is away, gRPC waits longer and longer between reconnect attempts (about 12 s
measured after a 30 s outage), so a sidecar that is back would sit unused meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from grpc import StatusCode
from grpc.aio import AioRpcError

logger = logging.getLogger(__name__)

#: gRPC's default receive limit; the sidecar applies the same to what it receives.
MESSAGE_LIMIT = 4 * 1024 * 1024
#: Seconds between two attempts to replace the client (a sidecar still down is probed again).
RENEW_INTERVAL = 0.5
#: Seconds a replaced client stays open, so calls already under way on it can finish.
RETIRE_GRACE = 15.0


def unavailable(exc: BaseException) -> bool:
    """Whether an SDK error (however deeply wrapped) is gRPC UNAVAILABLE: no sidecar there."""
    seen: BaseException | None = exc
    for _ in range(4):
        if isinstance(seen, DaprGrpcError | AioRpcError):
            return bool(seen.code() == StatusCode.UNAVAILABLE)
        if seen is None:
            return False
        seen = seen.__cause__
    return False


async def sidecar_healthy(port: int, api_token: str | None, timeout: float = 1.0) -> bool:
    """One probe of the sidecar's outbound health on 127.0.0.1 (no retry, never blocking)."""
    request = "GET /v1.0/healthz/outbound HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if api_token:
        request += f"dapr-api-token: {api_token}\r\n"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(f"{request}\r\n".encode())
                status = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    parts = status.split()
    return len(parts) >= 2 and parts[1][:1] == b"2"


def message_limit(generation: int) -> int | None:
    """``max_grpc_message_length`` for the client of ``generation`` (None: the SDK's default).

    gRPC channels to one address with the same arguments share one connection (its global
    subchannel pool), reconnect backoff included, so a new client alone would wait just as
    long. The SDK takes no channel options, but this argument it does: a few bytes more per
    generation give each new client a connection of its own.
    """
    return None if generation == 0 else MESSAGE_LIMIT + generation


class ClientKeeper:
    """Holds the current client; ``failed`` renews it after an UNAVAILABLE call.

    ``renew(generation)`` builds a new client, or returns None when the sidecar does not answer
    yet (the next failed call tries again); ``generation`` counts the clients made (1, 2, ...).
    """

    def __init__(
        self, client: DaprClient, renew: Callable[[int], Awaitable[DaprClient | None]]
    ) -> None:
        self.current = client
        self._renew = renew
        self._renewing: asyncio.Task[None] | None = None
        self._last_try = 0.0
        self._generation = 0
        self._made: list[DaprClient] = []  #: clients made here, closed by close()
        self._closers: set[asyncio.Task[None]] = set()

    def failed(self, exc: BaseException) -> None:
        """Note a failed call; after UNAVAILABLE, renew the client in the background."""
        if not unavailable(exc) or self._renewing is not None:
            return
        now = time.monotonic()
        if now - self._last_try < RENEW_INTERVAL:
            return
        self._last_try = now
        self._renewing = asyncio.create_task(self._replace())

    async def _replace(self) -> None:
        try:
            fresh = await self._renew(self._generation + 1)
        except Exception as exc:
            logger.warning("could not build a new Dapr client: %s", exc)
            fresh = None
        finally:
            self._renewing = None
        if fresh is None:
            return
        self._generation += 1
        old, self.current = self.current, fresh
        self._made.append(fresh)
        logger.info("the sidecar answers again: calls go through a new Dapr client")
        closer = asyncio.create_task(self._retire(old))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _retire(self, client: DaprClient) -> None:
        await asyncio.sleep(RETIRE_GRACE)
        await self._close_one(client)

    async def _close_one(self, client: DaprClient) -> None:
        if client in self._made:
            self._made.remove(client)
            await client.close()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        """Close the clients made here (the first one belongs to whoever passed it in)."""
        if self._renewing is not None:
            self._renewing.cancel()
            await asyncio.gather(self._renewing, return_exceptions=True)
        for closer in list(self._closers):
            closer.cancel()
        await asyncio.gather(*self._closers, return_exceptions=True)
        for client in list(self._made):
            await self._close_one(client)
