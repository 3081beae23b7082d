"""state.redis specifics: storage layout, first-write marker, Redis going away and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import redis

from sidecar.components import Component, ComponentError
from sidecar.errors import DaprError
from sidecar.state.base import Concurrency, SetRequest, StoreUnavailable, StreamAppend
from sidecar.state.redis import RedisStateStore
from sidecar.state_service import StateService
from tests.conftest import RedisServer
from tests.procs import free_port
from tests.sidecar.state.conftest import APP_ID

S = "statestore"


def component(host: str) -> Component:
    return Component(S, "state.redis", "v1", {"redisHost": host})


@pytest.fixture
async def service(redis_server: RedisServer) -> AsyncIterator[StateService]:
    store = RedisStateStore(component(redis_server.host))
    await store.init()
    yield StateService({S: (store, component(redis_server.host))}, APP_ID)
    await store.close()


async def test_layout_is_a_hash_with_data_and_version(
    service: StateService, redis_server: RedisServer
) -> None:
    await service.save(S, [SetRequest("layout", b'{"x":1}', is_json=True)])
    await service.save(S, [SetRequest("layout", b'{"x":2}', is_json=True)])
    raw = redis.Redis(port=redis_server.port)
    try:
        assert raw.hgetall(f"{APP_ID}||layout") == {b"data": b'{"x":2}', b"version": b"2"}
        assert raw.ttl(f"{APP_ID}||layout") == -1
    finally:
        raw.close()


async def test_first_write_marker_guards_later_writes(service: StateService) -> None:
    await service.save(S, [SetRequest("plain", b"1")])
    # Not written first-write: contrib's script lets a first-write without etag overwrite it.
    await service.save(S, [SetRequest("plain", b"2", concurrency=Concurrency.FIRST_WRITE)])
    with pytest.raises(DaprError) as exc:
        await service.save(S, [SetRequest("plain", b"3")])
    assert exc.value.http_status == 500  # "failed to set key": no etag, so not a 409
    found = await service.get(S, "plain")
    assert found is not None and found.data == b"2"
    await service.save(S, [SetRequest("plain", b"4", etag=found.etag)])


async def test_init_fails_clearly_without_redis() -> None:
    store = RedisStateStore(component(f"127.0.0.1:{free_port()}"))
    with pytest.raises(ComponentError) as exc:
        await store.init()
    assert exc.value.field_name == "redisHost"
    assert "error connecting to redis" in str(exc.value)
    await store.close()


async def test_redis_down_then_back(own_redis: RedisServer) -> None:
    comp = component(own_redis.host)
    store = RedisStateStore(comp)
    await store.init()
    service = StateService({S: (store, comp)}, APP_ID)
    try:
        await service.save(S, [SetRequest("k", b"before")])
        own_redis.stop()
        with pytest.raises(StoreUnavailable):
            await store.get(f"{APP_ID}||k")
        with pytest.raises(DaprError) as get_err:
            await service.get(S, "k")
        assert (get_err.value.error_code, get_err.value.http_status) == ("ERR_STATE_GET", 500)
        assert get_err.value.grpc_code is grpc.StatusCode.INTERNAL
        assert get_err.value.message.startswith(f"fail to get k from state store {S}: ")
        with pytest.raises(DaprError) as save_err:
            await service.save(S, [SetRequest("k", b"during")])
        assert (save_err.value.error_code, save_err.value.http_status) == ("ERR_STATE_SAVE", 500)
        with pytest.raises(DaprError) as tx_err:
            await service.transact(S, [SetRequest("k", b"during")])
        assert tx_err.value.error_code == "ERR_STATE_TRANSACTION"

        # A restarted Redis has lost the Lua scripts: writes must load them again.
        own_redis.restart()
        await service.save(S, [SetRequest("k", b"after")])
        found = await service.get(S, "k")
        assert found is not None and found.data == b"after" and found.etag == "2"
        own_redis.restart()
        # restart() blocked the loop; a running sidecar notices the closed connection at once
        # (a transaction already written to it would be reported as of unknown outcome).
        await asyncio.sleep(0.05)
        await service.transact(S, [SetRequest("k", b"tx"), SetRequest("k2", b"tx2")])
        found = await service.get(S, "k")
        assert found is not None and found.data == b"tx"
    finally:
        await store.close()


async def test_scripts_reloaded_after_script_flush(
    service: StateService, redis_server: RedisServer
) -> None:
    raw = redis.Redis(port=redis_server.port)
    try:
        raw.script_flush()
        await service.transact(S, [SetRequest("flushed", b"1"), SetRequest("flushed2", b"2")])
        raw.script_flush()
        await service.save(S, [SetRequest("flushed", b"3")])
        raw.script_flush()
        await service.delete(S, "flushed2")
        raw.script_flush()
        stream = f"flushed-{free_port()}"
        appended = StreamAppend(stream, ("*", b"data", b"flushed3"))
        await service.transact(S, [SetRequest("flushed3", b"4")], appends={0: appended})
        assert [fields for _, fields in raw.xrange(stream)] == [{b"data": b"flushed3"}]
        raw.delete(stream)
    finally:
        raw.close()
    found = await service.get(S, "flushed")
    assert found is not None and (found.data, found.etag) == (b"3", "2")
    assert await service.get(S, "flushed2") is None
    appended_key = await service.get(S, "flushed3")
    assert appended_key is not None and appended_key.data == b"4"


async def test_an_append_is_written_exactly_when_its_operation_is(
    service: StateService, redis_server: RedisServer
) -> None:
    """The outbox's direct path: each upsert's stream entry comes and goes with the upsert."""
    raw = redis.Redis(port=redis_server.port)
    stream, wrong = f"appends-{free_port()}", f"not-a-stream-{free_port()}"
    raw.set(wrong, "x")
    await service.save(S, [SetRequest("stale", b"1")])

    def entry(text: bytes) -> StreamAppend:
        return StreamAppend(stream, ("*", b"data", text))

    try:
        with pytest.raises(DaprError):
            await service.transact(
                S,
                [
                    SetRequest("fresh", b"new"),
                    SetRequest("stale", b"lost", etag="999"),
                    SetRequest("elsewhere", b"lost"),
                ],
                appends={
                    0: entry(b"fresh"),
                    1: entry(b"stale"),
                    2: StreamAppend(wrong, ("*", b"data", b"elsewhere")),
                },
            )
        # Only the applied upsert was announced; the others changed neither key nor stream.
        assert [fields for _, fields in raw.xrange(stream)] == [{b"data": b"fresh"}]
        fresh, stale = await service.get(S, "fresh"), await service.get(S, "stale")
        assert fresh is not None and fresh.data == b"new"
        assert stale is not None and stale.data == b"1"
        assert await service.get(S, "elsewhere") is None
        assert raw.get(wrong) == b"x"
    finally:
        raw.delete(stream, wrong)
        raw.close()
