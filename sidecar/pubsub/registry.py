"""Which ``spec.type`` values this sidecar can load as pub/sub, and the factory for them."""

from __future__ import annotations

from sidecar.components import Component, ComponentError
from sidecar.pubsub.base import PubSub
from sidecar.pubsub.memory import InMemoryPubSub
from sidecar.pubsub.redis import RedisStreamsPubSub

PUBSUB_TYPES: frozenset[str] = frozenset({"pubsub.redis", "pubsub.in-memory"})

_VERSIONS = ("", "v1")


def create_pubsub(component: Component, app_id: str) -> PubSub:
    """A not yet initialised component; call ``init()`` to connect."""
    if component.type not in PUBSUB_TYPES:
        supported = ", ".join(sorted(PUBSUB_TYPES))
        raise ComponentError(
            component,
            "spec.type",
            f"pub/sub type {component.type!r} is not supported by this sidecar; "
            f"use one of: {supported}",
        )
    if component.version not in _VERSIONS:
        raise ComponentError(
            component,
            "spec.version",
            f"version {component.version!r} of {component.type} is not supported; use v1",
        )
    if component.type == "pubsub.redis":
        return RedisStreamsPubSub(component, app_id)
    return InMemoryPubSub(component, app_id)
