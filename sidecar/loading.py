"""Component loading, in daprd's order: secret stores first, then every other component with
its ``secretKeyRef`` values read from the store its ``auth.secretStore`` names.

daprd parks a component whose secret store is not loaded (a warning, nothing more); this sidecar
stops at start instead, saying which component and store, as it does for every other component
that cannot load.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.components import Component, ComponentError
from sidecar.pubsub.base import PubSub
from sidecar.pubsub.registry import PUBSUB_TYPES, create_pubsub
from sidecar.secretstores.base import SecretError, SecretStore
from sidecar.secretstores.registry import SECRET_TYPES, create_secret_store
from sidecar.state.base import StateStore
from sidecar.state.registry import STATE_TYPES, capabilities, create_state_store

logger = logging.getLogger(__name__)


class SidecarStartError(Exception):
    """The sidecar cannot start (a component failed, a port is taken); the message says why."""


@dataclass
class Components:
    """The loaded component instances, by name."""

    stores: dict[str, tuple[StateStore, Component]] = field(default_factory=dict)
    pubsubs: dict[str, PubSub] = field(default_factory=dict)
    secrets: dict[str, SecretStore] = field(default_factory=dict)
    loaded: list[tuple[Component, tuple[str, ...]]] = field(default_factory=list)  #: + features

    def add(self, component: Component, instance: Any) -> None:
        kind = component.type.split(".", 1)[0]
        if kind == "state":
            self.stores[component.name] = (instance, component)
            features = capabilities(instance)
        elif kind == "secretstores":
            self.secrets[component.name] = instance
            features = sorted(instance.features)
        else:
            self.pubsubs[component.name] = instance
            features = sorted(instance.features)
        self.loaded.append((component, tuple(features)))

    async def close(self) -> None:
        """Close every component at once, as daprd's closer does, with its log lines."""
        for component, _ in self.loaded:
            logger.info(
                "Shutting down component %s (%s/%s)",
                component.name,
                component.type,
                component.version,
            )
        closers = [s.close() for s, _ in self.stores.values()]
        closers += [p.close() for p in self.pubsubs.values()]
        closers += [s.close() for s in self.secrets.values()]
        for result in await asyncio.gather(*closers, return_exceptions=True):
            if isinstance(result, Exception):
                logger.warning("error closing a component: %s", result)


async def resolve_secrets(component: Component, stores: Mapping[str, SecretStore]) -> Component:
    """``component`` with its ``secretKeyRef`` values read, as daprd's ProcessResource: a
    secret that cannot be read is logged and its field left as it was; a key the secret lacks
    (or an empty value) leaves it too. ValueError when the secret store is not loaded."""
    if not component.secret_refs:
        return component
    store = stores.get(component.secret_store)
    if store is None:
        fields = ", ".join(sorted(component.secret_refs))
        named = repr(component.secret_store) if component.secret_store else "none"
        known = ", ".join(sorted(stores)) or "none"
        raise ValueError(
            f"metadata {fields} use secretKeyRef, so auth.secretStore must name a secret store "
            f"loaded by this sidecar (named: {named}; loaded: {known})"
        )
    metadata = dict(component.metadata)
    read: dict[str, dict[str, str]] = {}
    for key, ref in component.secret_refs.items():
        if ref.name not in read:
            try:
                read[ref.name] = await store.get(ref.name, {})
            except SecretError as exc:
                logger.error(
                    "Error getting secret: %s (%s, metadata %s)", exc, component.where(), key
                )
                continue
        value = read[ref.name].get(ref.field, "")
        if value:
            metadata[key] = value
    return dataclasses.replace(component, metadata=metadata)


def _create(component: Component, app_id: str, env: Mapping[str, str]) -> Any:
    kind = component.type.split(".", 1)[0]
    if kind == "state":
        return create_state_store(component, app_id)
    if kind == "pubsub":
        # daprd's security.CurrentNamespace(): NAMESPACE, "default" when unset.
        return create_pubsub(component, app_id, env.get("NAMESPACE", "default"))
    if kind == "secretstores":
        return create_secret_store(component, env)
    supported = ", ".join(sorted(STATE_TYPES | PUBSUB_TYPES | SECRET_TYPES))
    raise ComponentError(
        component,
        "spec.type",
        f"type {component.type!r} is not supported by this sidecar; use one of: {supported}",
    )


async def _load(
    component: Component, app_id: str, env: Mapping[str, str], secrets: Mapping[str, SecretStore]
) -> tuple[Component, Any] | None:
    """The initialised instance; None if it failed and ``ignoreErrors`` is set."""
    instance: Any = None
    try:
        if component.unresolved:
            raise ComponentError(
                component,
                component.unresolved,
                f"failed to parse metadata: property {component.unresolved} refers to "
                "{podName} but podName is not set",
            )
        component = await resolve_secrets(component, secrets)
        instance = _create(component, app_id, env)
        async with asyncio.timeout(component.init_timeout):
            await instance.init()
    except Exception as exc:  # any failure of a component's own code stops startup
        why = (
            f"init timed out after {component.init_timeout}s"
            if isinstance(exc, TimeoutError)
            else str(exc)
        )
        if instance is not None:
            await _close_quietly(instance)
        if component.ignore_errors:
            logger.warning("ignoring failed %s: %s", component.where(), why)
            return None
        if isinstance(exc, ComponentError):
            raise SidecarStartError(str(exc)) from None
        raise SidecarStartError(f"{component.where()}: init failed: {why}") from None
    logger.info("component loaded: %s (%s/%s)", component.name, component.type, component.version)
    return component, instance


async def create_components(
    components: tuple[Component, ...], app_id: str, env: Mapping[str, str]
) -> Components:
    """Load every component; ignoreErrors ones may fail quietly. Secret stores load first, one
    by one in file order (one may read its own secrets from an earlier one), then the rest
    concurrently."""
    loaded = Components()
    first = [c for c in components if c.type.startswith("secretstores.")]
    rest = [c for c in components if not c.type.startswith("secretstores.")]
    try:
        for component in first:
            done = await _load(component, app_id, env, loaded.secrets)
            if done is not None:
                loaded.add(*done)
        results = await asyncio.gather(
            *(_load(c, app_id, env, loaded.secrets) for c in rest), return_exceptions=True
        )
    except BaseException:
        await loaded.close()
        raise
    for result in results:
        if isinstance(result, tuple):
            loaded.add(*result)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await loaded.close()
        raise failures[0]
    return loaded


async def _close_quietly(instance: Any) -> None:
    try:
        await instance.close()
    except Exception as exc:  # already failing; the init error is the one to report
        logger.debug("closing a failed component: %s", exc)
