"""Shared pieces of the pub/sub tests: components on the test Redis, bounded polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

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


@contextlib.asynccontextmanager
async def serve_app(
    port: int, handle: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> AsyncIterator[None]:
    """A real HTTP app on 127.0.0.1:port answering every POST with ``handle``."""
    application = web.Application()
    application.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()
