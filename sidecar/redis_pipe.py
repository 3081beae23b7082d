"""One pipelined Redis connection on hiredis: the sidecar's per-operation Redis path.

redis-py's asyncio client takes a pooled connection, a lock and several Python layers per
command, which on this workload cost more CPU than the sidecar's own logic (measured by
bench scenario 6). Here every caller writes its packed command into one buffer that is flushed
once per event-loop tick, and replies are matched to callers in order, so concurrent calls share
one syscall each way: the implicit pipelining go-redis users get from connection reuse.
Blocking commands (XREADGROUP BLOCK) must not use it: they would hold every caller behind them.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis

from sidecar.redis_endpoint import RedisEndpoint

Arg = str | bytes | int | float


def _pack(args: tuple[Arg, ...]) -> bytes:
    """RESP encoding of one command, in C."""
    # hiredis' stub types the argument as a 1-tuple; it takes any length.
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``); the message is Redis' text."""

    @property
    def no_script(self) -> bool:
        """EVALSHA of a script Redis does not have (restart, SCRIPT FLUSH)."""
        return str(self).startswith("NOSCRIPT")


class RedisUnavailable(ConnectionError):
    """Redis could not be reached, or the connection broke before the reply came."""


class OutcomeUnknown(RedisUnavailable):
    """The connection broke after a transaction was written: Redis may have run it or not."""


@dataclass(frozen=True, slots=True)
class PipeSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    connect_timeout: float = 5.0
    max_retries: int = 3  #: connection attempts after the first, go-redis' default
    min_backoff: float = 0.008
    max_backoff: float = 0.512

    @property
    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint(self.host, self.port, self.db, self.username, self.password, self.tls)


class _Waiter:
    """The future of one caller and how many replies it still expects."""

    __slots__ = ("future", "remaining", "replies")

    def __init__(self, future: asyncio.Future[Any], count: int) -> None:
        self.future = future
        self.remaining = count
        self.replies: list[Any] = []


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=ReplyError)
        self.waiters: collections.deque[_Waiter] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def send(self, packed: bytes, future: asyncio.Future[Any], count: int) -> None:
        """Write a packed command (or several) now if the connection is idle, else queue it for
        this tick's flush, so commands issued while others are in flight share one write."""
        idle = not self.waiters and not self._buffer
        self.waiters.append(_Waiter(future, count))
        if idle and self.transport is not None and not self.transport.is_closing():
            self.transport.write(packed)
            return
        if not self._buffer:
            asyncio.get_running_loop().call_soon(self._flush)
        self._buffer.append(packed)

    def _flush(self) -> None:
        buffer, self._buffer = self._buffer, []
        if self.transport is not None and not self.transport.is_closing():
            # One write: uvloop's writelines sends each buffer with its own syscall.
            self.transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiters = self.waiters
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RedisUnavailable(f"redis protocol error: {exc}"))
                if self.transport is not None:
                    self.transport.abort()
                return
            if reply is False:
                return
            if not waiters:  # a reply nobody asked for: the stream is out of step
                self._fail(RedisUnavailable("unexpected reply from redis"))
                if self.transport is not None:
                    self.transport.abort()
                return
            waiter = waiters[0]
            if waiter.remaining == 1 and not waiter.replies:
                waiters.popleft()
                if not waiter.future.done():
                    waiter.future.set_result(reply)
                continue
            waiter.replies.append(reply)
            waiter.remaining -= 1
            if waiter.remaining == 0:
                waiters.popleft()
                if not waiter.future.done():
                    waiter.future.set_result(waiter.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(RedisUnavailable(f"connection to redis lost: {exc or 'closed by server'}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._buffer.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)


class RedisPipe:
    """Commands over one shared connection, reconnecting on the next call after a failure.

    Connecting and commands whose connection broke are retried with go-redis' backoff, then
    fail with RedisUnavailable.
    """

    def __init__(self, settings: PipeSettings) -> None:
        self.settings = settings
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._closed = False

    async def execute(self, *args: Arg) -> Any:
        """One command; an error reply raises ReplyError."""
        reply = await self._send(_pack(args), 1)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def execute_many(
        self, commands: Sequence[Sequence[Arg]], *, resend: bool = True
    ) -> list[Any]:
        """Several commands in one write; replies in order, error replies as ReplyError values.

        Without ``resend`` they are never sent twice: a break after the write raises
        OutcomeUnknown.
        """
        if not commands:
            return []
        packed = b"".join(_pack(tuple(command)) for command in commands)
        replies = await self._send(packed, len(commands), resend=resend)
        return [replies] if len(commands) == 1 else list(replies)

    async def transaction(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """MULTI, the commands, EXEC: EXEC's replies (errors as ReplyError values).

        Raises ReplyError when Redis refused to queue a command (EXECABORT).
        """
        # Never sent twice: its commands need not be idempotent (a second run of a compare-and-
        # swap that did run the first time would fail, and report a stored change as lost).
        replies = await self.execute_many([("MULTI",), *commands, ("EXEC",)], resend=False)
        result = replies[-1]
        if isinstance(result, ReplyError):
            queued = [r for r in replies[1:-1] if isinstance(r, ReplyError)]
            raise queued[0] if queued else result
        if result is None:
            raise ReplyError("transaction aborted")
        return list(result)

    async def _send(self, packed: bytes, count: int, *, resend: bool = True) -> Any:
        # Like go-redis, a command whose connection broke is sent again on a new one (after a
        # Redis restart the first command meets the dead socket); it may thus run twice.
        # Without ``resend``, a break after the write raises OutcomeUnknown instead.
        backoff = self.settings.min_backoff
        for attempt in range(self.settings.max_retries + 1):
            protocol = self._protocol
            if protocol is None or protocol.transport is None:
                protocol = await self._connected()
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            protocol.send(packed, future, count)
            try:
                return await future
            except RedisUnavailable as exc:
                if not resend:
                    raise OutcomeUnknown(f"{exc}; the transaction may or may not have run") from exc
                if attempt == self.settings.max_retries or self._closed:
                    raise
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.max_backoff)
        raise AssertionError("unreachable")

    async def _connected(self) -> _Protocol:
        if self._closed:
            raise RedisUnavailable("redis client is closed")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect_with_retries())
        return await asyncio.shield(self._connecting)

    async def _connect_with_retries(self) -> _Protocol:
        settings = self.settings
        backoff = settings.min_backoff
        for attempt in range(settings.max_retries + 1):
            try:
                async with asyncio.timeout(settings.connect_timeout):
                    protocol = await self._connect()
            except (OSError, TimeoutError, ReplyError) as exc:
                if isinstance(exc, ReplyError) or attempt == settings.max_retries:
                    raise RedisUnavailable(
                        f"cannot connect to redis at {settings.host}:{settings.port}: "
                        f"{exc or 'timeout'}"
                    ) from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, settings.max_backoff)
            else:
                self._protocol = protocol
                return protocol
        raise AssertionError("unreachable")

    async def _connect(self) -> _Protocol:
        settings = self.settings
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if settings.tls else None
        _, protocol = await loop.create_connection(
            _Protocol, settings.host, settings.port, ssl=context
        )
        setup: list[tuple[Arg, ...]] = []
        if settings.password:
            if settings.username:
                setup.append(("AUTH", settings.username, settings.password))
            else:
                setup.append(("AUTH", settings.password))
        if settings.db:
            setup.append(("SELECT", settings.db))
        if setup:
            future: asyncio.Future[Any] = loop.create_future()
            packed = b"".join(_pack(command) for command in setup)
            protocol.send(packed, future, len(setup))
            try:
                replies = await future
            except BaseException:
                if protocol.transport is not None:
                    protocol.transport.close()
                raise
            replies = [replies] if len(setup) == 1 else replies
            errors = [reply for reply in replies if isinstance(reply, ReplyError)]
            if errors:
                if protocol.transport is not None:
                    protocol.transport.close()
                raise errors[0]
        return protocol

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await asyncio.wait([protocol.lost], timeout=1.0)
