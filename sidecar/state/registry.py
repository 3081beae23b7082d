"""Which ``state.*`` component types this sidecar runs, and the factory the runtime calls."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.components import Component, ComponentError
from sidecar.state.base import StateStore
from sidecar.state.keys import key_prefix
from sidecar.state.memory import MemoryStateStore
from sidecar.state.postgres import PostgresStateStore
from sidecar.state.redis import RedisStateStore
from sidecar.state.sqlite import SqliteStateStore

_FACTORIES: dict[str, Callable[[Component], StateStore]] = {
    "state.redis": RedisStateStore,
    "state.sqlite": SqliteStateStore,
    "state.postgresql": PostgresStateStore,
    "state.in-memory": lambda component: MemoryStateStore(component.name),
}
#: Versions implemented per type; daprd's state.postgresql v2 has another schema and etags.
_VERSIONS: dict[str, frozenset[str]] = {"state.postgresql": frozenset({"", "v1"})}
STATE_TYPES: frozenset[str] = frozenset(_FACTORIES)


def create_state_store(component: Component, app_id: str) -> StateStore:
    """An uninitialised store for ``component`` (the runtime awaits ``init()``).

    Raises ComponentError for an unknown type or version (naming what is supported) and
    for missing or invalid metadata fields, including an illegal ``keyPrefix``.
    """
    factory = _FACTORIES.get(component.type)
    if factory is None:
        supported = ", ".join(sorted(STATE_TYPES))
        raise ComponentError(
            component,
            "spec.type",
            f"unsupported state store type {component.type!r}; supported: {supported}",
        )
    versions = _VERSIONS.get(component.type)
    if versions is not None and component.version not in versions:
        raise ComponentError(
            component,
            "spec.version",
            f"{component.type} version {component.version!r} is not supported; use v1",
        )
    key_prefix(component, app_id)  # fails early on a keyPrefix containing "||"
    return factory(component)


def capabilities(store: StateStore) -> list[str]:
    """The store's features in the order daprd's metadata API lists them."""
    ordered: tuple[str, ...] = getattr(store, "capabilities", tuple(sorted(store.features)))
    return list(ordered)
