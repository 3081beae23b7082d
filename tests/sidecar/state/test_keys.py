"""keyPrefix strategies: what the store sees and what the caller gets back."""

from __future__ import annotations

import pytest

from sidecar.components import Component, ComponentError
from sidecar.errors import DaprError
from sidecar.state.base import SetRequest
from sidecar.state.keys import key_prefix, original_key
from sidecar.state.memory import MemoryStateStore
from sidecar.state_service import StateService


def comp(prefix: str | None) -> Component:
    meta = {} if prefix is None else {"keyPrefix": prefix}
    return Component("store1", "state.in-memory", "v1", meta)


@pytest.mark.parametrize(
    ("prefix", "namespace", "stored"),
    [
        (None, "", "app1||k"),
        ("appid", "", "app1||k"),
        ("AppID", "", "app1||k"),
        ("name", "", "store1||k"),
        ("namespace", "prod", "prod.app1||k"),
        ("namespace", "", "app1||k"),
        ("none", "", "k"),
        ("MyPrefix", "", "myprefix||k"),
    ],
)
async def test_prefix_strategies(prefix: str | None, namespace: str, stored: str) -> None:
    store = MemoryStateStore("store1")
    service = StateService({"store1": (store, comp(prefix))}, "app1", namespace)
    await service.save("store1", [SetRequest("k", b"v")])
    assert await store.get(stored) is not None
    assert [i.key for i in await service.bulk_get("store1", ["k"])] == ["k"]
    await service.transact("store1", [SetRequest("k2", b"v")])
    assert await store.get(stored[:-1] + "k2") is not None


def test_prefix_with_separator_is_a_component_error() -> None:
    with pytest.raises(ComponentError) as exc:
        key_prefix(comp("a||b"), "app1")
    assert exc.value.field_name == "keyPrefix"


def test_metadata_name_is_case_insensitive_and_no_app_id_means_no_prefix() -> None:
    component = Component("s", "state.in-memory", "v1", {"KEYPREFIX": "Custom"})
    assert key_prefix(component, "app") == "custom||"
    assert key_prefix(comp(None), "") == ""


def test_original_key() -> None:
    assert original_key("app||k") == "k"
    assert original_key("k") == "k"
    assert original_key("ns.app||k||x") == "k"


async def test_no_store_configured() -> None:
    with pytest.raises(DaprError) as exc:
        await StateService({}, "app1").get("statestore", "k")
    assert exc.value.error_code == "ERR_STATE_STORE_NOT_CONFIGURED"
    assert exc.value.http_status == 500
