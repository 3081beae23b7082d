"""pubsub.in-memory: every subscription gets every message; a failure is dropped (contrib 1.18)."""

from __future__ import annotations

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
