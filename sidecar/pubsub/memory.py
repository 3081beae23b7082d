"""``pubsub.in-memory``: an event bus inside this sidecar process, like daprd's in-memory one.

As contrib 1.18's component on its event bus (``common/eventbus``, transactional async
handlers):

- Every subscription of a topic gets every message (there are no consumer groups, and nothing
  crosses processes); a message published to a topic nobody subscribes to is gone.
- Each subscription handles its messages one at a time, and a publish waits until every
  subscription it reaches has finished the message before: a slow subscriber slows its
  publishers instead of piling messages up in memory.
- A subscription to a topic ending in ``*`` gets the messages of every topic that starts with
  what precedes the ``*``, but not of that prefix itself (``orders*`` gets ``orders-eu``, not
  ``orders``); its messages carry the subscribed topic, as contrib hands them over. The
  component says so in its features (``SUBSCRIBE_WILDCARDS``).
- A failed delivery is logged and dropped ("Remove in-memory pubsub retries"): retrying is the
  resiliency policy's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sidecar.components import Component
from sidecar.pubsub.base import BulkEntry, Consumers, Handler, Message, PublishError

logger = logging.getLogger(__name__)

WILDCARDS = "SUBSCRIBE_WILDCARDS"


def matches(subscribed: str, topic: str) -> bool:
    """Whether a subscription to ``subscribed`` gets messages published to ``topic``."""
    if subscribed == topic:
        return True
    prefix = subscribed[:-1]
    return subscribed.endswith("*") and topic.startswith(prefix) and topic != prefix


@dataclass(eq=False)
class _Subscriber:
    topic: str
    handler: Handler
    consumers: Consumers
    #: Held from the moment a publish hands it a message until the handler is done with it.
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    def free(self, _: asyncio.Task[None]) -> None:
        self.busy.release()


class InMemoryPubSub:
    features: frozenset[str] = frozenset({WILDCARDS})

    def __init__(self, component: Component, app_id: str) -> None:
        self.name = component.name
        self._subscribers: list[_Subscriber] = []
        self._closed = False

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True
        for subscriber in list(self._subscribers):
            await subscriber.consumers.stop()
        self._subscribers.clear()

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        """Hand the message to every subscription of ``topic``, each once it is free."""
        if self._closed:
            raise PublishError("component is closed")
        for subscriber in [s for s in self._subscribers if matches(s.topic, topic)]:
            await subscriber.busy.acquire()
            if subscriber not in self._subscribers:  # unsubscribed while we waited
                subscriber.busy.release()
                continue
            message = Message(topic=subscriber.topic, data=data, metadata=dict(metadata))
            delivery = subscriber.consumers.spawn(
                _deliver(subscriber.handler, message), f"memory-{subscriber.topic}"
            )
            # Freed however the delivery ends, even cancelled before it began.
            delivery.add_done_callback(subscriber.free)

    async def bulk_publish(self, topic: str, entries: Sequence[BulkEntry]) -> list[str]:
        if self._closed:
            return [entry.entry_id for entry in entries]
        for entry in entries:
            await self.publish(topic, entry.data, entry.metadata)
        return []

    async def subscribe(self, topic: str, handler: Handler, *, concurrency: int) -> Consumers:
        """Subscribe ``handler``; ``concurrency`` is ignored, as daprd's bus is serial too.
        Stopping it drops the message it is handling (nothing here outlives a subscriber)."""
        if self._closed:
            raise RuntimeError("component is closed")

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        subscriber = _Subscriber(topic, handler, Consumers(self.name, unsubscribe))
        self._subscribers.append(subscriber)
        return subscriber.consumers


async def _deliver(handler: Handler, message: Message) -> None:
    try:
        await handler(message)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.error("in-memory pubsub: delivery on %s failed: %s", message.topic, exc)
