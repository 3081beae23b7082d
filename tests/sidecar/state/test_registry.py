"""The factory refuses what it cannot run, naming the field and the fix."""

from __future__ import annotations

import pytest

from sidecar.components import Component, ComponentError
from sidecar.state.memory import MemoryStateStore
from sidecar.state.registry import STATE_TYPES, capabilities, create_state_store


def test_unknown_type_names_the_supported_ones() -> None:
    with pytest.raises(ComponentError) as exc:
        create_state_store(Component("s", "state.mongodb", "v1", {}), "app")
    for supported in STATE_TYPES:
        assert supported in str(exc.value)


@pytest.mark.parametrize(
    ("type_", "field"),
    [
        ("state.redis", "redisHost"),
        ("state.sqlite", "connectionString"),
        ("state.postgresql", "connectionString"),
    ],
)
def test_missing_required_field(type_: str, field: str) -> None:
    with pytest.raises(ComponentError) as exc:
        create_state_store(Component("s", type_, "v1", {}), "app")
    assert exc.value.field_name == field
    assert "e.g." in str(exc.value)


def test_postgresql_v2_is_refused() -> None:
    component = Component("s", "state.postgresql", "v2", {"connectionString": "host=x"})
    with pytest.raises(ComponentError) as exc:
        create_state_store(component, "app")
    assert exc.value.field_name == "spec.version"


def test_bad_values() -> None:
    bad = [
        Component("s", "state.in-memory", "v1", {"keyPrefix": "x||y"}),
        Component("s", "state.sqlite", "v1", {"connectionString": "a.db", "tableName": "x;y"}),
        Component("s", "state.sqlite", "v1", {"connectionString": "a.db", "timeout": "soon"}),
        Component("s", "state.postgresql", "v1", {"connectionString": "host=x port=abc"}),
    ]
    for component in bad:
        with pytest.raises(ComponentError):
            create_state_store(component, "app")


def test_capabilities_in_daprd_order() -> None:
    assert capabilities(MemoryStateStore("s")) == [
        "ETAG",
        "TRANSACTIONAL",
        "TTL",
        "DELETE_WITH_PREFIX",
        "KEYS_LIKE",
        "ACTOR",
    ]
