"""Which ``secretstores.*`` types this sidecar can load, and the factory for them."""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.components import Component, ComponentError
from sidecar.secretstores.base import SecretStore
from sidecar.secretstores.local_env import LocalEnvSecretStore
from sidecar.secretstores.local_file import LocalFileSecretStore

SECRET_TYPES: frozenset[str] = frozenset({"secretstores.local.file", "secretstores.local.env"})

_VERSIONS = ("", "v1")


def create_secret_store(component: Component, env: Mapping[str, str]) -> SecretStore:
    """A not yet initialised store; ComponentError for an unknown type or a missing field."""
    if component.type not in SECRET_TYPES:
        supported = ", ".join(sorted(SECRET_TYPES))
        raise ComponentError(
            component,
            "spec.type",
            f"secret store type {component.type!r} is not supported by this sidecar; "
            f"use one of: {supported}",
        )
    if component.version not in _VERSIONS:
        raise ComponentError(
            component,
            "spec.version",
            f"version {component.version!r} of {component.type} is not supported; use v1",
        )
    if component.type == "secretstores.local.env":
        return LocalEnvSecretStore(component, env)
    return LocalFileSecretStore(component)
