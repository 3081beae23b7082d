"""Which ``spec.type`` values this sidecar can load as pub/sub, and the factory for them."""

from __future__ import annotations

from sidecar.components import Component, check_type
from sidecar.pubsub.base import PubSub
from sidecar.pubsub.memory import InMemoryPubSub
from sidecar.pubsub.redis import RedisStreamsPubSub

PUBSUB_TYPES: frozenset[str] = frozenset({"pubsub.redis", "pubsub.in-memory"})


def create_pubsub(component: Component, app_id: str) -> PubSub:
    """A not yet initialised component; call ``init()`` to connect."""
    check_type(component, PUBSUB_TYPES, "pub/sub")
    if component.type == "pubsub.redis":
        return RedisStreamsPubSub(component, app_id)
    return InMemoryPubSub(component, app_id)
