"""Component definitions as the runtime sees them after loading the resources folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A metadata value read from a secret store (``secretKeyRef``) when the component loads."""

    name: str  #: the secret
    key: str = ""  #: the key within it; "" = the secret's own name

    @property
    def field(self) -> str:
        return self.key or self.name


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    type: str  #: e.g. "state.redis", "pubsub.redis"
    version: str  #: e.g. "v1"
    metadata: Mapping[str, str]  #: spec.metadata with {uuid}/{appID}/... templates resolved
    scopes: tuple[str, ...] = ()  #: app ids allowed to load it; empty = every app
    ignore_errors: bool = False
    init_timeout: float = 5.0  #: seconds
    source: Path | None = None  #: the YAML file it came from, for error messages
    #: metadata fields whose value comes from a secret, resolved by the runtime at load
    secret_refs: Mapping[str, SecretRef] = field(default_factory=dict)
    secret_store: str = ""  #: ``auth.secretStore``: where ``secret_refs`` are read
    #: Why the metadata cannot be resolved (daprd fails the component's init with it): the
    #: name of the item that uses ``{podName}`` when POD_NAME is not set, else "".
    unresolved: str = ""
    #: Whether a metadata value, as written, names ``{namespace}`` (daprd's ContainsNamespace):
    #: a pubsub so marked prefixes its topics with the namespace (pubsub/namespaced.py).
    namespace_scoped: bool = False

    def where(self) -> str:
        return f"component {self.name!r} ({self.type}) in {self.source or '<memory>'}"

    def require(self, key: str, hint: str = "") -> str:
        """The metadata value ``key``, or a ComponentError that says how to fix it."""
        value = self.metadata.get(key, "")
        if not value:
            raise ComponentError(self, key, f"required metadata field is missing. {hint}".strip())
        return value

    def get_int(self, key: str, default: int) -> int:
        raw = self.metadata.get(key, "")
        if raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ComponentError(self, key, f"expected an integer, got {raw!r}") from None

    def get_bool(self, key: str, default: bool) -> bool:
        raw = self.metadata.get(key, "").strip().lower()
        if raw == "":
            return default
        if raw in {"true", "1", "yes", "on"}:
            return True
        if raw in {"false", "0", "no", "off"}:
            return False
        raise ComponentError(self, key, f"expected true or false, got {raw!r}")


class ComponentError(Exception):
    """A component cannot be loaded or initialised; the message names file, field and fix."""

    def __init__(self, component: Component, field_name: str, problem: str) -> None:
        self.component = component
        self.field_name = field_name
        self.problem = problem
        where = component.where()
        super().__init__(f"{where}: metadata {field_name!r}: {problem}")


def check_type(component: Component, supported: frozenset[str], kind: str) -> None:
    """ComponentError unless ``component`` is one of the ``supported`` types, at v1."""
    if component.type not in supported:
        raise ComponentError(
            component,
            "spec.type",
            f"{kind} type {component.type!r} is not supported by this sidecar; "
            f"use one of: {', '.join(sorted(supported))}",
        )
    if component.version not in ("", "v1"):
        raise ComponentError(
            component,
            "spec.version",
            f"version {component.version!r} of {component.type} is not supported; use v1",
        )


@dataclass(frozen=True, slots=True)
class RouteRule:
    match: str  #: a CEL expression over ``event``
    path: str


@dataclass(frozen=True, slots=True)
class Subscription:
    """A programmatic (``GET /dapr/subscribe``) or declarative (kind: Subscription) one."""

    pubsubname: str
    topic: str
    rules: tuple[RouteRule, ...] = ()
    default_path: str = ""  #: final match-all route; "" = none
    metadata: Mapping[str, str] = field(default_factory=dict)
    dead_letter_topic: str = ""
    scopes: tuple[str, ...] = ()
    bulk: bool = False  #: bulkSubscribe.enabled
    bulk_max_messages: int = 0  #: bulkSubscribe.maxMessagesCount; 0 = daprd's default (100)
    bulk_max_await_ms: int = 0  #: bulkSubscribe.maxAwaitDurationMs; 0 = daprd's default (1000)
    source: str = "programmatic"  #: or the YAML file path
    name: str = ""  #: a declarative one's ``metadata.name``; "" for the app's own
