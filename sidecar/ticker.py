"""Go's ``time.Ticker``, for loops that must keep daprd's schedule."""

from __future__ import annotations

import asyncio


class Ticker:
    """Ticks every ``interval`` seconds from its creation, however long each round takes.

    As Go's ``time.Ticker``: a tick that falls while the previous round still runs is taken at
    once when it ends (one at most: the others are dropped), and the schedule does not move.
    A loop that sleeps ``interval`` after each round instead drifts later by every round's
    length, which decides races between processes that tick at the same period (two sidecars
    reclaiming the same pending messages).
    """

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"a ticker's interval must be positive, not {interval}")
        self._interval = interval
        self._next = asyncio.get_running_loop().time() + interval

    async def wait(self) -> None:
        """Until the next tick (at once if one fell since the last wait)."""
        loop = asyncio.get_running_loop()
        delay = self._next - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        dropped = int((loop.time() - self._next) // self._interval)
        self._next += (dropped + 1) * self._interval
