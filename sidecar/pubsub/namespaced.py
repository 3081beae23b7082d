"""A namespaced pubsub: one whose metadata names ``{namespace}``.

daprd marks such a pubsub NamespaceScoped (``meta.ContainsNamespace`` over the metadata as
written) and puts the namespace in front of every topic it publishes to or subscribes to on it,
so apps of different namespaces can share one broker: topic ``orders`` is ``defaultorders`` on
the broker when NAMESPACE is unset. Everything above the broker (scopes, routing, CloudEvent
fields, metrics, the metadata API) keeps the topic as the app named it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sidecar.pubsub.base import BulkEntry, Consumers, Handler, PubSub


class NamespacedPubSub:
    """``inner`` with every topic prefixed by ``namespace`` on the way to the broker."""

    def __init__(self, inner: PubSub, namespace: str) -> None:
        self.inner = inner
        self.namespace = namespace
        self.name = inner.name
        self.features = inner.features

    def broker_topic(self, topic: str) -> str:
        return self.namespace + topic

    async def init(self) -> None:
        await self.inner.init()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        await self.inner.publish(self.broker_topic(topic), data, metadata)

    async def bulk_publish(self, topic: str, entries: Sequence[BulkEntry]) -> list[str]:
        return await self.inner.bulk_publish(self.broker_topic(topic), entries)

    async def subscribe(self, topic: str, handler: Handler, *, concurrency: int) -> Consumers:
        return await self.inner.subscribe(
            self.broker_topic(topic), handler, concurrency=concurrency
        )
