"""Multi-item saves and deletes under an outbound policy, as daprd's PerformBulkStoreOperation:
rounds that retry only the items that failed for another reason than their etag.

The store is the in-memory one, made to fail chosen keys on their first write (a backend that
dropped part of a batch), and counting what each round sent.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sidecar.components import Component
from sidecar.errors import DaprError
from sidecar.resiliency_loading import parse_resiliency
from sidecar.state.base import DeleteRequest, SetRequest, StoreUnavailable
from sidecar.state.memory import MemoryStateStore
from sidecar.state_service import StateService

POLICY = """
kind: Resiliency
spec:
  policies:
    retries:
      thrice: {policy: constant, duration: 5ms, maxRetries: 3}
  targets:
    components:
      statestore:
        outbound:
          retry: thrice
"""


class FlakyStore(MemoryStateStore):
    """Fails each key in ``flaky`` on its first ``fails`` writes; records every write."""

    def __init__(self, flaky: set[str], fails: int = 1) -> None:
        super().__init__("statestore")
        self.flaky = dict.fromkeys(flaky, fails)
        self.writes: list[str] = []

    def _trip(self, key: str) -> None:
        self.writes.append(key)
        if self.flaky.get(key, 0) > 0:
            self.flaky[key] -= 1
            raise StoreUnavailable(f"{key}: connection reset")

    async def set(self, request: SetRequest) -> None:
        self._trip(request.key)
        await super().set(request)

    async def delete(self, request: DeleteRequest) -> None:
        self._trip(request.key)
        await super().delete(request)


async def service(store: FlakyStore, *, policy: bool = True) -> StateService:
    await store.init()
    component = Component("statestore", "state.in-memory", "v1", {"keyPrefix": "none"})
    resiliency = parse_resiliency([yaml.safe_load(POLICY)] if policy else [], "app")
    return StateService({"statestore": (store, component)}, "app", resiliency=resiliency)


def items(*keys: str, etag: str | None = None) -> list[SetRequest]:
    return [SetRequest(key=k, value=b'"v"', etag=etag if k == "e" else None) for k in keys]


async def test_a_round_retries_only_the_items_that_failed() -> None:
    store = FlakyStore({"b"})
    state = await service(store)
    await state.save("statestore", items("a", "b", "c"))
    assert store.writes == ["a", "b", "c", "b"]
    for key in "abc":
        found: Any = await state.get("statestore", key)
        assert found.data == b'"v"'


async def test_an_etag_failure_is_not_retried_and_is_reported() -> None:
    store = FlakyStore({"b"})
    state = await service(store)
    with pytest.raises(DaprError) as failed:
        await state.save("statestore", items("e", "b", etag="999"))
    assert failed.value.error_code == "ERR_STATE_SAVE"
    # The etag failure stays out of the second round; the other item went through.
    assert store.writes == ["e", "b", "b"]
    assert (await state.get("statestore", "b")).data == b'"v"'


async def test_what_still_fails_when_retries_run_out_is_reported() -> None:
    store = FlakyStore({"b"}, fails=10)
    state = await service(store)
    with pytest.raises(DaprError) as failed:
        await state.save("statestore", items("a", "b"))
    assert "connection reset" in failed.value.message
    assert store.writes == ["a", "b", "b", "b", "b"]  # the first round and three retries


async def test_bulk_deletes_run_in_rounds_too() -> None:
    store = FlakyStore(set())
    state = await service(store)
    await state.save("statestore", items("a", "b"))
    store.flaky["a"] = 1
    store.writes.clear()
    await state.delete_bulk("statestore", [DeleteRequest("a"), DeleteRequest("b")])
    assert store.writes == ["a", "b", "a"]
    assert await state.get("statestore", "a") is None


async def test_without_a_policy_each_item_is_tried_once() -> None:
    store = FlakyStore({"b"})
    state = await service(store, policy=False)
    with pytest.raises(DaprError):
        await state.save("statestore", items("a", "b"))
    assert store.writes == ["a", "b"]
