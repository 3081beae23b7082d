"""``pubsub.in-memory``: an event bus inside this sidecar process, like daprd's in-memory one.

Every subscription of a topic gets every message (there are no consumer groups, and nothing
crosses processes). Each subscription handles its messages one at a time. A failed delivery
is logged and dropped, as contrib 1.18's component does ("Remove in-memory pubsub retries"):
retrying is the resiliency policy's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from sidecar.components import Component
from sidecar.pubsub.base import BulkEntry, Consumers, Handler, Message, PublishError

logger = logging.getLogger(__name__)


class InMemoryPubSub:
    features: frozenset[str] = frozenset()

    def __init__(self, component: Component, app_id: str) -> None:
        self.name = component.name
        self._queues: dict[str, list[asyncio.Queue[Message]]] = {}
        self._consumers: set[Consumers] = set()
        self._closed = False

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True
        for consumers in list(self._consumers):
            await consumers.stop()
        self._queues.clear()

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        if self._closed:
            raise PublishError("component is closed")
        message = Message(topic=topic, data=data, metadata=dict(metadata))
        for queue in self._queues.get(topic, ()):
            queue.put_nowait(message)

    async def bulk_publish(self, topic: str, entries: Sequence[BulkEntry]) -> list[str]:
        if self._closed:
            return [entry.entry_id for entry in entries]
        for entry in entries:
            await self.publish(topic, entry.data, entry.metadata)
        return []

    async def subscribe(self, topic: str, handler: Handler, *, concurrency: int) -> Consumers:
        """Start a serial consumer; ``concurrency`` is ignored, as daprd's bus is serial too.
        Stopping it drops what it has not handled yet (nothing here outlives a subscriber)."""
        if self._closed:
            raise RuntimeError("component is closed")
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._queues.setdefault(topic, []).append(queue)

        def unsubscribe() -> None:
            self._consumers.discard(consumers)
            queues = self._queues.get(topic, [])
            if queue in queues:
                queues.remove(queue)

        consumers = Consumers(self.name, unsubscribe)
        consumers.spawn(self._consume(queue, handler), f"memory-{topic}")
        self._consumers.add(consumers)
        return consumers

    async def _consume(self, queue: asyncio.Queue[Message], handler: Handler) -> None:
        while not self._closed:
            message = await queue.get()
            try:
                await handler(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.error("in-memory pubsub: delivery on %s failed: %s", message.topic, exc)
