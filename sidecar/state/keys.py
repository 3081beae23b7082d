"""How daprd turns a user's state key into the stored key (``keyPrefix``) and back.

Mirrors dapr/dapr pkg/components/state/state_config.go: strategies ``appid`` (default),
``name``, ``namespace``, ``none`` or any other string used as a literal prefix.
"""

from __future__ import annotations

from sidecar.components import Component, ComponentError

SEPARATOR = "||"


def illegal_key_message(key: str) -> str | None:
    """daprd's message for a key (or keyPrefix) containing ``||``; None if the key is legal."""
    if SEPARATOR in key:
        return f"input key/keyPrefix '{key}' can't contain '{SEPARATOR}'"
    return None


def key_prefix(component: Component, app_id: str, namespace: str = "") -> str:
    """The text put before every user key of this store, separator included ("" = none).

    ``namespace`` is the NAMESPACE daprd runs in; empty falls back to the app id strategy.
    """
    strategy = "appid"
    for name, value in component.metadata.items():
        if name.lower() == "keyprefix":
            strategy = value.lower()
            break
    problem = illegal_key_message(strategy)
    if problem:
        raise ComponentError(component, "keyPrefix", problem)
    if strategy == "none":
        return ""
    if strategy == "name":
        return component.name + SEPARATOR
    if strategy in ("appid", "namespace"):
        if not app_id:
            return ""
        if strategy == "namespace" and namespace:
            return f"{namespace}.{app_id}{SEPARATOR}"
        return app_id + SEPARATOR
    return strategy + SEPARATOR


def original_key(stored_key: str) -> str:
    """The user key inside a stored key: the part after the first ``||`` (daprd's rule)."""
    parts = stored_key.split(SEPARATOR, 2)
    return stored_key if len(parts) <= 1 else parts[1]
