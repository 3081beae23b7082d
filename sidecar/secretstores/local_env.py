"""``secretstores.local.env``: secrets from the sidecar's environment, as components-contrib
reads them: ``prefix`` is prepended to the name, and ``APP_API_TOKEN`` and ``DAPR_*`` are never
given out (a denied or unset variable reads as an empty value, not an error)."""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.components import Component


def allowed(name: str) -> bool:
    upper = name.upper()
    return upper != "APP_API_TOKEN" and not upper.startswith("DAPR_")


class LocalEnvSecretStore:
    features: frozenset[str] = frozenset()

    def __init__(self, component: Component, env: Mapping[str, str]) -> None:
        self._prefix = component.metadata.get("prefix", "")
        self._env = env

    async def init(self) -> None:
        return None

    async def get(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        variable = self._prefix + name
        return {name: self._env.get(variable, "") if allowed(variable) else ""}

    async def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        prefix = self._prefix
        for variable, value in self._env.items():
            if prefix and (len(variable) <= len(prefix) or not variable.startswith(prefix)):
                continue
            if allowed(variable):
                name = variable[len(prefix) :]
                found[name] = {name: value}
        return found

    async def close(self) -> None:
        return None
