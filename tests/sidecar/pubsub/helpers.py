"""Shared pieces of the pub/sub tests: components on the test Redis, bounded polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from sidecar.components import Component


def redis_component(host: str, **metadata: str) -> Component:
    return Component(
        name="pubsub",
        type="pubsub.redis",
        version="v1",
        metadata={"redisHost": host, **metadata},
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)
