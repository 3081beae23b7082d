"""Batches of one bulk subscription's messages, each handler call held open until settled.

Pub/sub components hand over one message per handler call. As daprd's default bulk subscriber
(``pkg/runtime/pubsub/default_bulksub.go``) does for brokers without native bulk support, each
call waits until the batch holding its message is handled. A batch is flushed at
``maxMessagesCount`` entries or ``maxAwaitDurationMs`` after its first one, and batches are
handled one at a time, like daprd's single batching goroutine; so a component whose concurrency
is below ``maxMessagesCount`` still makes progress, one timer-flushed batch after another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sidecar.pubsub.base import Message, SubscriptionClosedError

logger = logging.getLogger(__name__)


class BatchClosedError(SubscriptionClosedError):
    """The subscription closed before the message was handled; the broker keeps it."""


@dataclass(slots=True, eq=False)
class Held:
    """One message waiting in a batch; settling it lets its handler call return or raise."""

    message: Message
    outcome: asyncio.Future[None]

    @property
    def abandoned(self) -> bool:
        """Settled already, or the component cancelled the handler call (it will redeliver)."""
        return self.outcome.done()

    def settle(self, error: BaseException | None = None) -> None:
        """None acknowledges the message; an error leaves it to the broker for redelivery."""
        if self.outcome.done():
            return
        if error is None:
            self.outcome.set_result(None)
        else:
            self.outcome.set_exception(error)


#: Handles one batch and settles each message in it.
Flush = Callable[[list[Held]], Awaitable[None]]


class Batcher:
    def __init__(self, name: str, max_messages: int, max_await: float, flush: Flush) -> None:
        self._name = name
        self._max_messages = max_messages
        self._max_await = max_await  #: seconds
        self._flush = flush
        self._queue: asyncio.Queue[Held] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        """Stop batching; messages not handled yet stay unacknowledged."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while not self._queue.empty():
            self._queue.get_nowait().settle(BatchClosedError("subscription is closed"))

    async def submit(self, message: Message) -> None:
        """Wait until the message is handled: return to acknowledge it, raise to keep it."""
        held = Held(message, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(held)
        # Cancelling this call (component closing, processingTimeout) cancels the future too,
        # which marks the message abandoned.
        await held.outcome

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                await self._flush(batch)
            except Exception as exc:
                logger.exception("bulk delivery of %d messages failed (%s)", len(batch), self._name)
                for held in batch:
                    held.settle(exc)
            finally:
                for held in batch:  # cancelled mid-batch (close): nothing more is acknowledged
                    held.settle(BatchClosedError("subscription is closed"))

    async def _next(self, timeout: float | None) -> Held | None:
        """The next message not abandoned, or None once ``timeout`` seconds have passed."""
        while True:
            if self._queue.empty():
                try:
                    async with asyncio.timeout(timeout):
                        held = await self._queue.get()
                except TimeoutError:
                    return None
            else:
                held = self._queue.get_nowait()
            if not held.abandoned:
                return held

    async def _collect(self) -> list[Held]:
        first = await self._next(None)
        assert first is not None  # no timeout: _next waits for a message
        batch = [first]
        deadline = time.monotonic() + self._max_await
        while len(batch) < self._max_messages:
            held = await self._next(max(deadline - time.monotonic(), 0.0))
            if held is None:
                break
            batch.append(held)
        return batch
