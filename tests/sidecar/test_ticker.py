"""The Go-style ticker behind pub/sub reclaim rounds: a schedule that slow rounds do not shift."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.ticker import Ticker


async def test_rounds_do_not_shift_the_schedule() -> None:
    """Five ticks of 0.2 s with 0.12 s of work after each come 1.0 s after the start; a loop
    that slept the interval after each round would be at 1.6 s."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    ticker = Ticker(0.2)
    for _ in range(4):
        await ticker.wait()
        await asyncio.sleep(0.12)
    await ticker.wait()
    assert 1.0 <= loop.time() - start < 1.3


async def test_a_tick_missed_during_a_long_round_is_taken_at_once_and_others_dropped() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    ticker = Ticker(0.2)
    await ticker.wait()  # 0.2
    await asyncio.sleep(0.5)  # past the ticks at 0.4 and 0.6
    before = loop.time()
    await ticker.wait()  # the one at 0.4, buffered: at once
    assert loop.time() - before < 0.05
    await ticker.wait()  # 0.6 was dropped: the next is 0.8
    assert 0.8 <= loop.time() - start < 0.95


async def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Ticker(0)
