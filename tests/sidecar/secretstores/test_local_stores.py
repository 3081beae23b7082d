"""The local secret stores as components-contrib reads them, and secretKeyRef resolution."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from sidecar.components import Component, ComponentError, SecretRef
from sidecar.loading import resolve_secrets
from sidecar.secretstores.base import SecretError, SecretStore
from sidecar.secretstores.local_env import LocalEnvSecretStore
from sidecar.secretstores.local_file import read_secrets
from sidecar.secretstores.registry import create_secret_store

DOCUMENT = {"db": {"user": "u", "ports": [5432, 5433]}, "flag": True, "none": None, "s": "x"}


def store_component(type_: str, **metadata: str) -> Component:
    return Component(name="secrets", type=type_, version="v1", metadata=metadata)


def test_a_file_flattens_nested_keys_and_prints_values_as_go_does() -> None:
    assert read_secrets(DOCUMENT, ":", multi_valued=False) == {
        "db:user": "u",
        "db:ports:0": "%!s(float64=5432)",
        "db:ports:1": "%!s(float64=5433)",
        "flag": "%!s(bool=true)",
        "none": "%!s(<nil>)",
        "s": "x",
    }
    assert "db.user" in read_secrets(DOCUMENT, ".", multi_valued=False)
    # multiValued: a top-level object is one secret of several keys; numbers, booleans,
    # null and arrays at the top level are skipped, as contrib skips them.
    assert read_secrets(DOCUMENT, ":", multi_valued=True) == {
        "db": {"user": "u", "ports:0": "%!s(float64=5432)", "ports:1": "%!s(float64=5433)"},
        "s": "x",
    }


async def test_a_file_store_reads_gets_and_refuses(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(DOCUMENT))
    single = create_secret_store(
        store_component("secretstores.local.file", secretsFile=str(path)), {}
    )
    await single.init()
    assert await single.get("db:user", {}) == {"db:user": "u"}
    assert (await single.bulk_get({}))["s"] == {"s": "x"}
    assert single.features == frozenset()
    with pytest.raises(SecretError, match="secret nope not found"):
        await single.get("nope", {})

    multi = create_secret_store(
        store_component("secretstores.local.file", secretsFile=str(path), multiValued="true"),
        {},
    )
    await multi.init()
    assert await multi.get("db", {}) == {
        "user": "u",
        "ports:0": "%!s(float64=5432)",
        "ports:1": "%!s(float64=5433)",
    }
    assert multi.features == frozenset({"MULTIPLE_KEY_VALUES_PER_SECRET"})

    # Read as Go's json.Unmarshal reads it: NaN is no JSON, and its errors are Go's.
    bad = (
        ("[1]", "must hold a JSON object"),
        ("{", "is not JSON: unexpected end of JSON input"),
        ('{"a": NaN}', "is not JSON: invalid character 'N' looking for beginning of value"),
    )
    for content, why in bad:
        path.write_text(content)
        with pytest.raises(SecretError, match=why):
            await single.init()
    with pytest.raises(ComponentError, match="secretsFile"):
        create_secret_store(store_component("secretstores.local.file"), {})
    with pytest.raises(ComponentError, match="secretstores.local.env, secretstores.local.file"):
        create_secret_store(store_component("secretstores.azure.keyvault"), {})
    v2 = Component(name="s", type="secretstores.local.env", version="v2", metadata={})
    with pytest.raises(ComponentError, match="version 'v2' of secretstores.local.env"):
        create_secret_store(v2, {})


async def test_the_env_store_adds_its_prefix_and_hides_dapr_variables() -> None:
    env = {"APP_PW": "a", "APP_": "edge", "DAPR_API_TOKEN": "t", "APP_API_TOKEN": "x", "OTHER": "o"}
    prefixed = LocalEnvSecretStore(store_component("secretstores.local.env", prefix="APP_"), env)
    assert await prefixed.get("PW", {}) == {"PW": "a"}
    assert await prefixed.get("MISSING", {}) == {"MISSING": ""}
    assert await prefixed.bulk_get({}) == {"PW": {"PW": "a"}}  # APP_ itself is not longer
    plain = LocalEnvSecretStore(store_component("secretstores.local.env"), env)
    assert await plain.get("DAPR_API_TOKEN", {}) == {"DAPR_API_TOKEN": ""}
    assert set(await plain.bulk_get({})) == {"APP_PW", "APP_", "OTHER"}


class Counting:
    """A secret store that counts reads and fails for one secret."""

    features: frozenset[str] = frozenset()

    def __init__(self, secrets: Mapping[str, dict[str, str]]) -> None:
        self.secrets = secrets
        self.reads = 0

    async def init(self) -> None:
        return None

    async def get(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        self.reads += 1
        if name not in self.secrets:
            raise SecretError(f"secret {name} not found")
        return self.secrets[name]

    async def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        return dict(self.secrets)

    async def close(self) -> None:
        return None


async def test_refs_resolve_from_the_named_store_once_per_secret() -> None:
    store = Counting({"pg": {"dsn": "host=db", "user": "u", "empty": ""}})
    stores: dict[str, SecretStore] = {"local": store}
    component = Component(
        name="pg",
        type="state.postgresql",
        version="v1",
        metadata={"connectionString": "", "user": "", "x": "kept", "y": "kept", "other": "v"},
        secret_refs={
            "connectionString": SecretRef("pg", "dsn"),
            "user": SecretRef("pg", "user"),
            "x": SecretRef("pg", "empty"),  # empty: the field stays as it was
            "y": SecretRef("missing"),  # unreadable: logged, the field stays
        },
        secret_store="local",
    )
    resolved = await resolve_secrets(component, stores)
    assert dict(resolved.metadata) == {
        "connectionString": "host=db",
        "user": "u",
        "x": "kept",
        "y": "kept",
        "other": "v",
    }
    assert store.reads == 2  # pg once, missing once

    unnamed = Component(
        name="pg",
        type="state.postgresql",
        version="v1",
        metadata={},
        secret_refs={"connectionString": SecretRef("pg", "dsn")},
    )
    with pytest.raises(ValueError, match=r"named: none; loaded: local"):
        await resolve_secrets(unnamed, stores)
    plain = Component(name="p", type="state.redis", version="v1", metadata={"a": "b"})
    assert await resolve_secrets(plain, {}) is plain
