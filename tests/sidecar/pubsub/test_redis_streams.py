"""pubsub.redis against a real Redis: groups, acknowledgement, reclaim, Redis restarts."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from sidecar.components import Component, ComponentError
from sidecar.localredis import start_redis
from sidecar.publishing import Publisher
from sidecar.pubsub.base import Message, SubscriptionClosedError
from sidecar.pubsub.redis import RedisStreamsPubSub, parse_settings
from sidecar.pubsub.registry import PUBSUB_TYPES, create_pubsub
from tests.conftest import RedisServer
from tests.procs import free_port
from tests.sidecar.pubsub.helpers import eventually, redis_component, unique


@pytest_asyncio.fixture
async def raw_redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    await client.aclose()


async def started(component: Component) -> RedisStreamsPubSub:
    pubsub = RedisStreamsPubSub(component, "app")
    await pubsub.init()
    return pubsub


def collector(into: list[Message]) -> Any:
    async def handler(message: Message) -> None:
        into.append(message)

    return handler


def collector_of_data(into: list[bytes]) -> Any:
    async def handler(message: Message) -> None:
        into.append(message.data)

    return handler


async def test_publish_and_consume_round_trip(redis_server: RedisServer) -> None:
    topic = unique("roundtrip")
    pubsub = await started(redis_component(redis_server.host, consumerID=unique("g")))
    received: list[Message] = []
    try:
        await pubsub.subscribe(topic, collector(received), concurrency=2)
        await pubsub.publish(topic, b"hello", {"k": "v"})
        await eventually(lambda: len(received) == 1)
        assert received[0].data == b"hello"
        assert received[0].metadata == {"k": "v"}
        assert received[0].topic == topic
    finally:
        await pubsub.close()


async def test_entries_use_contrib_field_layout_and_maxlen(
    redis_server: RedisServer, raw_redis: aioredis.Redis
) -> None:
    topic = unique("layout")
    pubsub = await started(redis_component(redis_server.host, maxLenApprox="5"))
    try:
        for n in range(300):
            await pubsub.publish(topic, str(n).encode(), {"n": str(n)})
        entries: Any = await raw_redis.xrevrange(topic, count=1)
        assert entries[0][1] == {b"data": b"299", b"metadata": b'{"n": "299"}'}
        # MAXLEN ~ trims whole macro nodes, so the stream is far shorter than 300.
        assert await raw_redis.xlen(topic) < 300
    finally:
        await pubsub.close()


async def test_same_consumer_id_competes_and_different_ids_fan_out(
    redis_server: RedisServer,
) -> None:
    topic, group = unique("compete"), unique("g")
    a = await started(redis_component(redis_server.host, consumerID=group))
    b = await started(redis_component(redis_server.host, consumerID=group))
    other = await started(redis_component(redis_server.host, consumerID=unique("g")))
    got_a: list[Message] = []
    got_b: list[Message] = []
    got_other: list[Message] = []
    try:
        await a.subscribe(topic, collector(got_a), concurrency=2)
        await b.subscribe(topic, collector(got_b), concurrency=2)
        await other.subscribe(topic, collector(got_other), concurrency=2)
        for n in range(40):
            await a.publish(topic, str(n).encode(), {})
        await eventually(lambda: len(got_a) + len(got_b) == 40 and len(got_other) == 40)
        competing = sorted(int(m.data) for m in got_a + got_b)
        assert competing == list(range(40))  # each message exactly once across the group
        assert sorted(int(m.data) for m in got_other) == list(range(40))
    finally:
        for pubsub in (a, b, other):
            await pubsub.close()


async def test_unacked_message_of_a_dead_consumer_is_reclaimed_with_same_event_id(
    redis_server: RedisServer, raw_redis: aioredis.Redis
) -> None:
    topic, group = unique("reclaim"), unique("g")
    settings = {"consumerID": group, "processingTimeout": "300", "redeliverInterval": "100ms"}
    first = await started(redis_component(redis_server.host, **settings))
    stuck = asyncio.Event()
    seen_by_first: list[Message] = []

    async def never_finishes(message: Message) -> None:
        seen_by_first.append(message)
        stuck.set()
        await asyncio.Event().wait()

    await first.subscribe(topic, never_finishes, concurrency=1)
    await Publisher({"pubsub": first}, "publisher").publish(
        "pubsub", topic, b'{"job": 1}', "application/json", {}
    )
    await asyncio.wait_for(stuck.wait(), 10)
    await first.close()  # dies mid-handling: never acknowledged
    assert (await raw_redis.xpending(topic, group))["pending"] == 1

    second = await started(redis_component(redis_server.host, **settings))
    received: list[Message] = []
    try:
        await second.subscribe(topic, collector(received), concurrency=1)
        await eventually(lambda: len(received) == 1)
        original = json.loads(seen_by_first[0].data)
        redelivered = json.loads(received[0].data)
        assert redelivered["id"] == original["id"]
        assert redelivered["data"] == {"job": 1}
        # The acknowledgement follows the handler's return; wait for it before closing.
        for _ in range(250):
            if (await raw_redis.xpending(topic, group))["pending"] == 0:
                break
            await asyncio.sleep(0.02)
        assert (await raw_redis.xpending(topic, group))["pending"] == 0
    finally:
        await second.close()


async def _pending(raw_redis: aioredis.Redis, topic: str, group: str) -> int:
    return int((await raw_redis.xpending(topic, group))["pending"])


async def _left_pending(
    raw_redis: aioredis.Redis, topic: str, group: str, count: int
) -> list[bytes]:
    """``count`` messages read by the group's consumer and never acknowledged, as a consumer
    that died mid-handling leaves them (oldest first)."""
    await raw_redis.xgroup_create(topic, group, id="0", mkstream=True)
    ids = [await raw_redis.xadd(topic, {"data": f"m{i}".encode()}) for i in range(count)]
    await raw_redis.xreadgroup(group, group, {topic: ">"}, count=count)
    return ids


async def test_the_reclaimer_looks_only_at_the_first_queue_depth_pending_messages(
    redis_server: RedisServer, raw_redis: aioredis.Redis
) -> None:
    """contrib's reclaimPendingMessages reads the group's first queueDepth pending messages and
    claims the ones idle for processingTimeout: one behind queueDepth older ones that are not
    due (handed out again lately) waits until one of those is acknowledged."""
    topic, group = unique("depth"), unique("g")
    first, second, third = await _left_pending(raw_redis, topic, group, 3)
    settings = {"processingTimeout": "300", "redeliverInterval": "100ms", "queueDepth": "2"}
    pubsub = await started(redis_component(redis_server.host, consumerID=group, **settings))
    received: list[bytes] = []

    async def keep_fresh(*entry_ids: bytes) -> None:
        # What another replica's reclaimer does to messages it hands out again.
        await raw_redis.xclaim(topic, group, group, min_idle_time=0, message_ids=list(entry_ids))

    try:
        await keep_fresh(first, second)
        await pubsub.subscribe(topic, collector_of_data(received), concurrency=2)
        for _ in range(8):  # 1.6 s: the third message is idle past processingTimeout for good
            await asyncio.sleep(0.2)
            await keep_fresh(first, second)
        assert received == []
        await raw_redis.xack(topic, group, first)
        for _ in range(25):  # now the third is among the first two pending: handed out
            if received:
                break
            await asyncio.sleep(0.2)
            await keep_fresh(second)
        assert received == [b"m2"]
    finally:
        await pubsub.close()


async def test_a_pending_message_deleted_from_the_stream_is_acknowledged(
    redis_server: RedisServer, raw_redis: aioredis.Redis
) -> None:
    """contrib's removeMessagesThatNoLongerExistFromPending: a claim that finds the message
    gone (trimmed) acknowledges it, so it stops taking a place among the pending."""
    topic, group = unique("trimmed"), unique("g")
    gone, kept = await _left_pending(raw_redis, topic, group, 2)
    await raw_redis.xdel(topic, gone)
    settings = {"processingTimeout": "200", "redeliverInterval": "100ms"}
    pubsub = await started(redis_component(redis_server.host, consumerID=group, **settings))
    received: list[bytes] = []
    try:
        await pubsub.subscribe(topic, collector_of_data(received), concurrency=1)
        await eventually(lambda: received == [b"m1"], 5)
        await eventually_async(lambda: _pending(raw_redis, topic, group), 0)
    finally:
        await pubsub.close()


async def test_a_failure_is_acknowledged_as_contrib_1_18_does(
    redis_server: RedisServer, raw_redis: aioredis.Redis
) -> None:
    """Retries are the resiliency policy's job: a handler that fails in time is acknowledged,
    so the reclaimer never hands the message out again."""
    topic, group = unique("failfast"), unique("g")
    pubsub = await started(
        redis_component(
            redis_server.host, consumerID=group, processingTimeout="200", redeliverInterval="50"
        )
    )
    attempts: list[bytes] = []

    async def failing(message: Message) -> None:
        attempts.append(message.data)
        raise RuntimeError("no")

    try:
        await pubsub.subscribe(topic, failing, concurrency=1)
        await pubsub.publish(topic, b"m", {})
        await eventually(lambda: len(attempts) == 1)
        await asyncio.sleep(0.8)  # four processing timeouts: a pending message would be back
        assert attempts == [b"m"]
        assert await _pending(raw_redis, topic, group) == 0
    finally:
        await pubsub.close()


async def test_a_failure_after_processing_timeout_leaves_the_message_for_the_reclaimer(
    redis_server: RedisServer, raw_redis: aioredis.Redis
) -> None:
    """contrib skips the acknowledgement when the handler's context (bounded by
    processingTimeout) has ended: the message is handed out again and succeeds."""
    topic, group = unique("faillate"), unique("g")
    # The reclaimer ticks at subscribe and then every second: the late failure (0.4 s) comes
    # between two ticks, so only a message left pending by it can be handed out again.
    pubsub = await started(
        redis_component(
            redis_server.host, consumerID=group, processingTimeout="300", redeliverInterval="1s"
        )
    )
    attempts: list[bytes] = []

    async def late_then_fine(message: Message) -> None:
        attempts.append(message.data)
        if len(attempts) == 1:
            await asyncio.sleep(0.4)
            raise RuntimeError("late")

    try:
        await pubsub.subscribe(topic, late_then_fine, concurrency=1)
        await pubsub.publish(topic, b"m", {})
        await eventually(lambda: len(attempts) == 2, 10)
        await eventually_async(lambda: _pending(raw_redis, topic, group), 0)
        assert attempts == [b"m", b"m"]
    finally:
        await pubsub.close()


async def test_a_slow_handler_is_not_cut_off_and_its_success_acknowledged(
    redis_server: RedisServer, raw_redis: aioredis.Redis
) -> None:
    """daprd delivers under a context of its own: processingTimeout does not end the call."""
    topic, group = unique("slow"), unique("g")
    pubsub = await started(
        redis_component(
            redis_server.host, consumerID=group, processingTimeout="200", redeliverInterval="5s"
        )
    )
    finished: list[bytes] = []

    async def slow(message: Message) -> None:
        await asyncio.sleep(0.6)
        finished.append(message.data)

    try:
        await pubsub.subscribe(topic, slow, concurrency=1)
        await pubsub.publish(topic, b"m", {})
        await eventually(lambda: finished == [b"m"], 10)
        await eventually_async(lambda: _pending(raw_redis, topic, group), 0)
    finally:
        await pubsub.close()


async def test_a_closing_subscription_leaves_the_message_pending(
    redis_server: RedisServer, raw_redis: aioredis.Redis
) -> None:
    topic, group = unique("closing"), unique("g")
    pubsub = await started(
        redis_component(
            redis_server.host, consumerID=group, processingTimeout="60s", redeliverInterval="5s"
        )
    )
    refused: list[bytes] = []

    async def closing(message: Message) -> None:
        refused.append(message.data)
        raise SubscriptionClosedError("subscription is closed")

    try:
        await pubsub.subscribe(topic, closing, concurrency=1)
        await pubsub.publish(topic, b"m", {})
        await eventually(lambda: refused == [b"m"])
        await asyncio.sleep(0.2)  # an acknowledgement would have been sent by now
        assert await _pending(raw_redis, topic, group) == 1
    finally:
        await pubsub.close()


async def eventually_async(read: Any, expected: int, timeout: float = 5.0) -> None:
    """Poll an async reading until it equals ``expected`` (bounded)."""
    for _ in range(int(timeout / 0.02)):
        if await read() == expected:
            return
        await asyncio.sleep(0.02)
    assert await read() == expected


async def test_consumer_recovers_after_redis_restart_and_recreates_lost_group(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="redis-restart-"))
    # No persistence: the restart loses the stream and the group, as a wiped Redis would.
    proc = start_redis(port, data_dir, appendonly=False)
    host = f"127.0.0.1:{port}"
    pubsub = await started(redis_component(host, consumerID=unique("g")))
    received: list[Message] = []
    topic = unique("restart")
    try:
        await pubsub.subscribe(topic, collector(received), concurrency=1)
        await pubsub.publish(topic, b"before", {})
        await eventually(lambda: len(received) == 1)
        proc.terminate()
        proc.wait(timeout=10)
        # Stay down until the consumer has noticed, so its reconnect path really runs.
        await eventually(lambda: "lost connection" in caplog.text, 15)
        proc = start_redis(port, data_dir, appendonly=False)

        async def publish_when_up() -> None:
            for _ in range(100):
                try:
                    await pubsub.publish(topic, b"after", {})
                    return
                except Exception:
                    await asyncio.sleep(0.05)
            raise AssertionError("could not publish after the restart")

        await publish_when_up()
        await eventually(lambda: [m.data for m in received] == [b"before", b"after"], 15)
    finally:
        await pubsub.close()
        proc.terminate()
        proc.wait(timeout=10)


async def test_init_fails_clearly_when_redis_does_not_answer() -> None:
    component = Component(
        name="pubsub",
        type="pubsub.redis",
        version="v1",
        metadata={"redisHost": f"127.0.0.1:{free_port()}"},
        init_timeout=1.0,
    )
    with pytest.raises(ComponentError, match="error connecting to redis"):
        await RedisStreamsPubSub(component, "app").init()


def test_settings_defaults_and_units() -> None:
    defaults = parse_settings(redis_component("h:1"), "my-app")
    assert defaults.consumer_id == "my-app"
    assert (defaults.processing_timeout, defaults.redeliver_interval) == (60.0, 15.0)
    assert (defaults.queue_depth, defaults.concurrency, defaults.max_len_approx) == (100, 10, None)
    custom = parse_settings(
        redis_component("h:1", processingTimeout="1500", redeliverInterval="2s", concurrency="3"),
        "x",
    )
    assert (custom.processing_timeout, custom.redeliver_interval, custom.concurrency) == (
        1.5,
        2.0,
        3,
    )
    with pytest.raises(ComponentError, match="processingTimeout"):
        parse_settings(redis_component("h:1", processingTimeout="soon"), "x")


def test_registry_names_types_and_missing_fields() -> None:
    assert {"pubsub.redis", "pubsub.in-memory"} <= PUBSUB_TYPES
    kafka = Component(name="k", type="pubsub.kafka", version="v1", metadata={})
    with pytest.raises(ComponentError, match=r"pubsub.kafka.*pubsub.in-memory, pubsub.redis"):
        create_pubsub(kafka, "app")
    no_host = Component(name="p", type="pubsub.redis", version="v1", metadata={})
    with pytest.raises(ComponentError, match="redisHost"):
        create_pubsub(no_host, "app")
