"""``secretstores.local.file``: secrets from a JSON file, as components-contrib reads it.

Nested objects and arrays flatten into keys joined by ``nestedSeparator`` (default ``:``), so
``{"db": {"password": "x"}}`` holds the secret ``db:password``. With ``multiValued: true`` each
top-level key is one secret whose keys are its flattened object. Values that are not strings
read as Go prints them (``%!s(float64=5432)``), as daprd gives them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sidecar import json_reader
from sidecar.components import Component
from sidecar.gofmt import go_format, go_sprint_s
from sidecar.secretstores.base import MULTIPLE_KEY_VALUES, SecretError


def flatten(value: Any, separator: str, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(joined key, text) for every leaf below ``value``; object keys in file order."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from flatten(child, separator, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from flatten(child, separator, (*path, str(index)))
    else:
        yield separator.join(path), go_sprint_s(value)


def read_secrets(
    document: Mapping[str, Any], separator: str, multi_valued: bool
) -> dict[str, str | dict[str, str]]:
    """The secrets a parsed file holds. A flattened key met twice keeps its first value."""
    if not multi_valued:
        flat: dict[str, str | dict[str, str]] = {}
        for key, text in flatten(document, separator):
            flat.setdefault(key, text)
        return flat
    secrets: dict[str, str | dict[str, str]] = {}
    for name, value in document.items():
        if isinstance(value, str):
            secrets[name] = value
        elif isinstance(value, dict):  # contrib skips top-level numbers, booleans and arrays
            inner: dict[str, str] = {}
            for key, text in flatten(value, separator):
                inner.setdefault(key, text)
            secrets[name] = inner
    return secrets


def as_data(name: str, secret: str | dict[str, str]) -> dict[str, str]:
    return {name: secret} if isinstance(secret, str) else dict(secret)


class LocalFileSecretStore:
    def __init__(self, component: Component) -> None:
        self._component = component
        self._path = Path(component.require("secretsFile", "Set it to a JSON file of secrets."))
        self._separator = component.metadata.get("nestedSeparator") or ":"
        self._multi_valued = component.get_bool("multiValued", False)
        self.features = frozenset({MULTIPLE_KEY_VALUES} if self._multi_valued else ())
        self._secrets: dict[str, str | dict[str, str]] = {}

    async def init(self) -> None:
        try:
            document = json_reader.loads(self._path.read_bytes())  # Go's json.Unmarshal
        except OSError as exc:
            raise SecretError(f"cannot read secrets file {self._path}: {exc}") from None
        except ValueError as exc:
            raise SecretError(f"secrets file {self._path} is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise SecretError(
                f"secrets file {self._path} must hold a JSON object, not {go_format(document)}"
            )
        self._secrets = read_secrets(document, self._separator, self._multi_valued)

    async def get(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        secret = self._secrets.get(name)
        if secret is None:
            raise SecretError(f"secret {name} not found")
        return as_data(name, secret)

    async def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        return {name: as_data(name, secret) for name, secret in self._secrets.items()}

    async def close(self) -> None:
        return None
