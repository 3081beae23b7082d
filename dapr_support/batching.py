"""Natural batching: requests that arrive while a call is in flight go out together as the next.

A sidecar call costs about the same CPU whether it carries one job or twenty, on both sides.
An idle store sees each request at once, alone, as before; under load the requests that queue
behind the call in flight share the next one, so batches grow exactly as fast as load does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Sends queued requests through ``send`` in batches of at most ``max_batch`` requests
    and, with ``weigh``, of at most ``max_weight`` in all (a heavier request goes alone).

    ``send`` gets the requests of one batch and returns one result or exception per request,
    in order; an exception it raises fails the whole batch. ``concurrency`` calls may be in
    flight at once.
    """

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 32,
        concurrency: int = 1,
        weigh: Callable[[T], int] | None = None,
        max_weight: int = 0,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._weigh = weigh
        self._max_weight = max_weight
        self._concurrency = concurrency
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._senders: set[asyncio.Task[None]] = set()
        self._active = 0  #: senders started and not yet returned
        self.calls = 0  #: batch calls made
        self.requests = 0  #: requests sent in them

    async def submit(self, request: T, timeout: float | None = None) -> R:
        """The result of ``request``, once the batch it went out in is answered.

        ``timeout``: TimeoutError after that many seconds in all, queued and in flight; a
        request still queued then is never sent. (A timer on the future: cheaper than
        ``asyncio.wait_for``, which wraps the wait in a task of its own.)
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((request, future))
        if self._active < self._concurrency:
            # Counted here and uncounted by _drain itself as it returns: a done-callback would
            # run a moment later, and a request queued in that moment would find no sender.
            self._active += 1
            sender = asyncio.create_task(self._drain())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        if timeout is None:
            return await future
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def _drain(self) -> None:
        try:
            await self._drain_queue()
        finally:
            self._active -= 1

    async def _drain_queue(self) -> None:
        while self._queue:
            taken = self._next_count()
            # A request whose caller was cancelled before it went out is not sent at all.
            batch = [entry for entry in self._queue[:taken] if not entry[1].done()]
            del self._queue[:taken]
            if not batch:
                continue
            self.calls += 1
            self.requests += len(batch)
            try:
                results = await self._send([request for request, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller gave up waiting
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _next_count(self) -> int:
        """How many queued requests the next batch takes: at least one."""
        if self._weigh is None:
            return self._max_batch
        weight = 0
        for count, (request, _) in enumerate(self._queue[: self._max_batch]):
            weight += self._weigh(request)
            if weight > self._max_weight:
                return max(1, count)
        return self._max_batch

    async def close(self) -> None:
        """Wait for the calls in flight (their callers are waiting for them too)."""
        if self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
