"""A load generator: N calls at concurrency C, optionally paced to a fixed rate, bounded in count
and in time."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """Latencies (ms) of the calls that succeeded, the errors of the others, wall time spent."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    def add_error(self, exc: BaseException) -> None:
        key = f"{type(exc).__name__}: {str(exc)[:120]}"
        self.errors[key] = self.errors.get(key, 0) + 1


def paced(count: int, rate: float) -> list[float]:
    """Start offsets (s) of ``count`` calls evenly spaced at ``rate`` calls/s."""
    return [i / rate for i in range(count)]


def poisson(count: int, rate: float, seed: int = 1) -> list[float]:
    """Start offsets (s) of ``count`` calls arriving as a Poisson process of ``rate`` calls/s:
    independent arrivals, which bunch up now and then as real traffic does (seeded, so every
    run offers the same schedule)."""
    rng = random.Random(seed)
    offsets: list[float] = []
    moment = 0.0
    for _ in range(count):
        offsets.append(moment)
        moment += rng.expovariate(rate)
    return offsets


async def run_load(
    call: Callable[[int], Awaitable[None]],
    *,
    count: int,
    concurrency: int,
    time_limit: float,
    start_at: Sequence[float] | None = None,
) -> LoadResult:
    """Run call(0..count-1) with at most `concurrency` in flight; stop starting new ones at
    time_limit, and cancel stragglers shortly after it so a stuck target cannot hang the run.

    With `start_at` (see `paced` and `poisson`), call i starts no earlier than start_at[i]
    seconds after the start: an open loop, offering every target the same load.
    """
    result = LoadResult()
    next_index = 0
    started = time.perf_counter()
    deadline = started + time_limit

    async def worker() -> None:
        nonlocal next_index
        while next_index < count and time.perf_counter() < deadline:
            index = next_index
            next_index += 1
            if start_at is not None:
                delay = started + start_at[index] - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            t0 = time.perf_counter()
            try:
                await call(index)
            except Exception as exc:  # every failure is counted and shown in the results
                result.add_error(exc)
                continue
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, count)))]
    _, pending = await asyncio.wait(tasks, timeout=time_limit + 10)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    result.timed_out = bool(pending) or next_index < count
    result.elapsed_s = time.perf_counter() - started
    return result
