"""pubsub.in-memory: every subscription gets every message; a failure is dropped (contrib 1.18)."""

from __future__ import annotations

import asyncio

from sidecar.components import Component
from sidecar.pubsub.base import Message
from sidecar.pubsub.memory import InMemoryPubSub
from sidecar.pubsub.registry import create_pubsub
from tests.sidecar.pubsub.helpers import eventually


def memory() -> InMemoryPubSub:
    component = Component(name="mem", type="pubsub.in-memory", version="v1", metadata={})
    pubsub = create_pubsub(component, "app")
    assert isinstance(pubsub, InMemoryPubSub)
    return pubsub


async def test_every_subscription_gets_every_message() -> None:
    pubsub = memory()
    await pubsub.init()
    first: list[bytes] = []
    second: list[bytes] = []

    async def to_first(message: Message) -> None:
        first.append(message.data)

    async def to_second(message: Message) -> None:
        second.append(message.data)

    try:
        await pubsub.subscribe("t", to_first, concurrency=1)
        await pubsub.subscribe("t", to_second, concurrency=1)
        await pubsub.publish("t", b"1", {})
        await pubsub.publish("other", b"x", {})
        await pubsub.publish("t", b"2", {})
        await eventually(lambda: first == [b"1", b"2"] and second == [b"1", b"2"])
    finally:
        await pubsub.close()


async def test_a_failed_delivery_is_dropped_not_retried() -> None:
    pubsub = memory()
    attempts: list[bytes] = []

    async def failing(message: Message) -> None:
        attempts.append(message.data)
        if message.data == b"bad":
            raise RuntimeError("no")

    try:
        await pubsub.subscribe("t", failing, concurrency=1)
        await pubsub.publish("t", b"bad", {})
        await pubsub.publish("t", b"good", {})
        await eventually(lambda: attempts[-1:] == [b"good"], 5)
        assert attempts == [b"bad", b"good"]
    finally:
        await pubsub.close()


async def test_a_publish_waits_until_the_subscription_finished_the_message_before() -> None:
    """contrib's bus locks a transactional handler from hand-over to return: no pile-up."""
    pubsub = memory()
    release = asyncio.Event()
    handled: list[bytes] = []

    async def slow(message: Message) -> None:
        if message.data == b"1":
            await release.wait()
        handled.append(message.data)

    try:
        await pubsub.subscribe("t", slow, concurrency=1)
        await asyncio.wait_for(pubsub.publish("t", b"1", {}), 1)  # the subscription was free
        second = asyncio.ensure_future(pubsub.publish("t", b"2", {}))
        await asyncio.sleep(0.2)
        assert not second.done() and handled == []
        release.set()
        await asyncio.wait_for(second, 1)
        await eventually(lambda: handled == [b"1", b"2"])
    finally:
        await pubsub.close()


async def test_a_publish_waiting_on_a_subscription_that_ends_goes_on() -> None:
    pubsub = memory()
    others: list[bytes] = []

    async def stuck(message: Message) -> None:
        await asyncio.Event().wait()

    async def other(message: Message) -> None:
        others.append(message.data)

    try:
        consumers = await pubsub.subscribe("t", stuck, concurrency=1)
        await pubsub.subscribe("t", other, concurrency=1)
        await pubsub.publish("t", b"1", {})
        second = asyncio.ensure_future(pubsub.publish("t", b"2", {}))
        await asyncio.sleep(0.1)
        assert not second.done()
        await consumers.stop()  # cancels the stuck delivery; the wait for it ends
        await asyncio.wait_for(second, 1)
        await eventually(lambda: others == [b"1", b"2"])
    finally:
        await pubsub.close()


async def test_a_topic_ending_in_a_star_gets_the_topics_it_prefixes() -> None:
    """contrib's eventbus with wildcards: ``orders*`` matches ``orders-eu`` and ``orders*``
    itself, not ``orders``; the message carries the subscribed topic."""
    pubsub = memory()
    assert "SUBSCRIBE_WILDCARDS" in pubsub.features
    starred: list[tuple[str, bytes]] = []
    exact: list[bytes] = []

    async def to_starred(message: Message) -> None:
        starred.append((message.topic, message.data))

    async def to_exact(message: Message) -> None:
        exact.append(message.data)

    try:
        await pubsub.subscribe("orders*", to_starred, concurrency=1)
        await pubsub.subscribe("orders", to_exact, concurrency=1)
        for topic in ("orders-eu", "orders", "ordersX", "order", "other", "orders*"):
            await pubsub.publish(topic, topic.encode(), {})
        expected = [("orders*", t) for t in (b"orders-eu", b"ordersX", b"orders*")]
        await eventually(lambda: starred == expected and exact == [b"orders"])
        await asyncio.sleep(0.1)
        assert starred == expected and exact == [b"orders"]
    finally:
        await pubsub.close()
