"""Which ``secretstores.*`` types this sidecar can load, and the factory for them."""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.components import Component, check_type
from sidecar.secretstores.base import SecretStore
from sidecar.secretstores.local_env import LocalEnvSecretStore
from sidecar.secretstores.local_file import LocalFileSecretStore

SECRET_TYPES: frozenset[str] = frozenset({"secretstores.local.file", "secretstores.local.env"})


def create_secret_store(component: Component, env: Mapping[str, str]) -> SecretStore:
    """A not yet initialised store; ComponentError for an unknown type or a missing field."""
    check_type(component, SECRET_TYPES, "secret store")
    if component.type == "secretstores.local.env":
        return LocalEnvSecretStore(component, env)
    return LocalFileSecretStore(component)
