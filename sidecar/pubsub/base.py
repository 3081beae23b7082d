"""What every pub/sub component offers the runtime.

A component moves opaque bytes (the runtime builds the CloudEvent envelope) and acknowledges
a message when the handler returns normally. What a handler that raises means is the
component's, as in components-contrib: pubsub.redis acknowledges it too unless it came late
(see redis.py), the in-memory bus retries it. A handler that raises SubscriptionClosedError
took nothing, and every component leaves that message for redelivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sidecar.redis_endpoint import RedisEndpoint
from sidecar.state.base import StreamAppend

logger = logging.getLogger(__name__)

#: Seconds a component's close() waits for its consumer tasks to finish.
CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


#: Called once per delivered message; returning acknowledges it, raising is a failure.
Handler = Callable[[Message], Awaitable[None]]


class SubscriptionClosedError(Exception):
    """The subscription is closing and took nothing: leave the message unacknowledged (as
    contrib components do when the handler's context is cancelled)."""


class SubscribeFailedError(Exception):
    """The component could not start consuming a topic (contrib's Subscribe returned an error,
    for example Redis down); the message is the component's error."""


class PublishError(Exception):
    """The broker did not take the message; the runtime answers ERR_PUBSUB_PUBLISH_MESSAGE."""


@dataclass(frozen=True, slots=True)
class BulkEntry:
    entry_id: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


class PubSub(Protocol):
    name: str
    features: frozenset[str]

    async def init(self) -> None:
        """Connect and check the broker answers; raise with a clear message if not."""

    async def close(self) -> None:
        """Stop consumers (in-flight handlers finish or are cancelled unacknowledged)."""

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None: ...

    async def bulk_publish(self, topic: str, entries: Sequence[BulkEntry]) -> list[str]:
        """Publish every entry; return the ids of the entries that failed."""

    async def subscribe(self, topic: str, handler: Handler, *, concurrency: int) -> Consumers:
        """Start consuming ``topic`` in the component's consumer group; returns at once with
        the handle that stops this subscription alone, or raises SubscribeFailedError."""


async def stop_tasks(tasks: set[asyncio.Task[None]], owner: str) -> None:
    """Cancel a component's consumer tasks and wait (bounded) until they have stopped."""
    for task in tasks:
        task.cancel()
    if tasks:
        _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
        if stuck:
            logger.warning("%s: %d consumer tasks did not stop in time", owner, len(stuck))
    tasks.clear()


class Consumers:
    """The tasks consuming one subscription. ``stop`` ends them: a message being handled is
    cancelled unacknowledged, so the broker delivers it again (as contrib components do when
    a subscription's context ends)."""

    def __init__(self, owner: str, on_stop: Callable[[], None] | None = None) -> None:
        self._owner = owner
        self._on_stop = on_stop
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        if self._on_stop is not None:
            self._on_stop()
            self._on_stop = None
        await stop_tasks(self._tasks, self._owner)


@runtime_checkable
class StreamPublisher(Protocol):
    """A pubsub whose topics are streams on a Redis that a store may append to."""

    endpoint: RedisEndpoint

    def stream_append(
        self, topic: str, data: bytes, metadata: Mapping[str, str]
    ) -> StreamAppend: ...
