"""Which ``spec.type`` values this sidecar can load as pub/sub, and the factory for them."""

from __future__ import annotations

from sidecar.components import Component, check_type
from sidecar.pubsub.base import PubSub
from sidecar.pubsub.memory import InMemoryPubSub
from sidecar.pubsub.namespaced import NamespacedPubSub
from sidecar.pubsub.redis import RedisStreamsPubSub

PUBSUB_TYPES: frozenset[str] = frozenset({"pubsub.redis", "pubsub.in-memory"})


def create_pubsub(component: Component, app_id: str, namespace: str = "default") -> PubSub:
    """A not yet initialised component; call ``init()`` to connect. ``namespace`` prefixes
    the topics of a namespaced one (its metadata names ``{namespace}``)."""
    check_type(component, PUBSUB_TYPES, "pub/sub")
    pubsub: PubSub
    if component.type == "pubsub.redis":
        pubsub = RedisStreamsPubSub(component, app_id)
    else:
        pubsub = InMemoryPubSub(component, app_id)
    if component.namespace_scoped:
        return NamespacedPubSub(pubsub, namespace)
    return pubsub
