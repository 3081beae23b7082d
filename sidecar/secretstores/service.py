"""The secrets API (``GetSecret`` / ``GetBulkSecret``) over the loaded secret stores, with
daprd's errors (pkg/api/universal/secrets.go). Secret scopes come from Configuration
resources, which this sidecar does not read, so every secret is allowed, as daprd allows them
when no configuration names the store."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from sidecar.errors import DaprError
from sidecar.secretstores.base import SecretError, SecretStore


def _not_configured() -> DaprError:
    return DaprError(
        "ERR_SECRET_STORES_NOT_CONFIGURED",
        "secret store is not configured",
        500,
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def _not_found(name: str) -> DaprError:
    return DaprError(
        "ERR_SECRET_STORE_NOT_FOUND",
        f"failed finding secret store with key {name}",
        401,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def _get_failed(message: str) -> DaprError:
    return DaprError("ERR_SECRET_GET", message, 500, grpc.StatusCode.INTERNAL)


class Secrets:
    def __init__(self, stores: Mapping[str, SecretStore]) -> None:
        self._stores = stores

    def _store(self, name: str) -> SecretStore:
        if not self._stores:
            raise _not_configured()
        store = self._stores.get(name)
        if store is None:
            raise _not_found(name)
        return store

    async def get(self, store: str, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        found = self._store(store)
        try:
            return await found.get(key, metadata)
        except SecretError as exc:
            raise _get_failed(
                f"failed getting secret with key {key} from secret store {store}: {exc}"
            ) from None

    async def bulk_get(self, store: str, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        found = self._store(store)
        try:
            return await found.bulk_get(metadata)
        except SecretError as exc:
            raise _get_failed(f"failed getting secrets from secret store {store}: {exc}") from None
