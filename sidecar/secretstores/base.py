"""What every secret store component offers the runtime, and the error it raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

#: The feature a store reports when one secret may hold several keys (daprd's metadata API).
MULTIPLE_KEY_VALUES = "MULTIPLE_KEY_VALUES_PER_SECRET"


class SecretError(Exception):
    """A secret cannot be read; the message is the component's own (daprd wraps it)."""


class SecretStore(Protocol):
    features: frozenset[str]

    async def init(self) -> None: ...

    async def get(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """The keys and values of secret ``name``; SecretError when it cannot be read."""
        ...

    async def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Every secret the store holds, by name."""
        ...

    async def close(self) -> None: ...
