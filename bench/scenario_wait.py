"""Scenario 3: how soon a waiting request answers 200 after its job becomes final.

Jobs of 100 ms go through `POST /Jobs/StartJobWithTimeout` on two replicas, so about half are
run by the other replica and the wait is woken across replicas (by the broadcast subscription).
Latency = the client's receipt of the 200 - the job's completedAt (millisecond resolution).

The target is judged under the hardest of three loads: a closed loop of 8 callers whose equal
jobs start together, so up to 8 jobs become final in the same millisecond and the last answers
wait for the others' writes. The same jobs are also offered as independent (Poisson) arrivals
at the rate that loop reached, and one at a time, to show what the bursts add.

A floor shows what the machine itself adds: a Redis round trip from an idle process, against
the same round trip made back to back. A process that sleeps is slow to wake on a virtual
machine, and a final write crosses several sleeping processes before the 200 goes out (the
replica's call to its sidecar, Redis, the sidecar's answer, the replica, the client).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as redis

from . import client
from .load import LoadResult, poisson, run_load
from .plan import Context
from .results import ScenarioResult, Target
from .stack import Service, Stack, require_runnable, wait_services
from .stats import Summary, rate, summarize

JOB_SECONDS = 0.1
CONCURRENCY = 8
#: Room for the Poisson arrivals that bunch up: the cap must not shape the offered load.
OPEN_LOOP_CAP = 64
P99_LIMIT_MS = 10.0
#: Jobs run one at a time at most (each takes its 100 ms and the answer's round trip).
ALONE_MAX = 100
#: The floor's round trips of each kind, and the idle time before each idle one (a job's).
FLOOR_TRIPS = 50
IDLE_SECONDS = JOB_SECONDS


@dataclass
class Delays:
    """ms from completedAt to the client's receipt of the 200, by where the job ran."""

    local: list[float]
    remote: list[float]

    @property
    def every(self) -> list[float]:
        return self.local + self.remote


class Waits:
    """Starts jobs through StartJobWithTimeout, alternating replicas, and records the delays."""

    def __init__(self, http: aiohttp.ClientSession, replicas: list[Service]) -> None:
        self._http = http
        self._replicas = replicas
        self.delays = Delays([], [])

    async def one(self, i: int) -> None:
        replica = self._replicas[i % len(self._replicas)]
        body: dict[str, Any] = {
            "type": "wait",
            "input": {"seconds": JOB_SECONDS},
            "timeoutSeconds": 30,
        }
        answer = await client.call(
            self._http, "POST", f"{replica.url}/Jobs/StartJobWithTimeout", json_body=body
        )
        job = answer.body
        if job.get("status") != "Completed":
            raise RuntimeError(f"job ended {job.get('status')}: {job.get('error')}")
        delay = (answer.received_at - client.job_time(job, "completedAt")) * 1000
        same = str(job.get("worker", "")).endswith(f"-{replica.proc.pid}")
        (self.delays.local if same else self.delays.remote).append(delay)

    def take(self) -> Delays:
        delays, self.delays = self.delays, Delays([], [])
        return delays


async def run(ctx: Context, result: ScenarioResult) -> None:
    """Fill `result` as figures come in, so a later failure keeps what was measured."""
    require_runnable("sidecar")
    require_runnable("job_orchestrator")
    stack = Stack(ctx.procs, ctx.root, ctx.subdir("s3"))
    replicas = [stack.orchestrator(), stack.orchestrator()]
    ctx.progress("scenario 3: starting two orchestrator replicas")
    wait_services(replicas)
    count = ctx.plan.wait_count
    limit = ctx.plan.load_time_limit
    async with client.session(OPEN_LOOP_CAP + 2) as http:
        waits = Waits(http, replicas)
        await waits.one(0)
        waits.take()
        load = await run_load(waits.one, count=count, concurrency=CONCURRENCY, time_limit=limit)
        bursts = _report(result, "", waits.take(), load, split=True)
        target = Target(
            f"p99 <= {P99_LIMIT_MS:.0f} ms ({CONCURRENCY} callers, closed loop)",
            bursts,
            P99_LIMIT_MS,
            bursts <= P99_LIMIT_MS,
        )
        result.targets.append(target)
        ctx.progress(f"scenario 3: {CONCURRENCY} at a time: p99 {bursts:.1f} ms")

        offered = rate(load.ok, load.elapsed_s)  # some answered: _report raised otherwise
        schedule = poisson(count, offered)
        load = await run_load(
            waits.one, count=count, concurrency=OPEN_LOOP_CAP, time_limit=limit, start_at=schedule
        )
        label = f"Poisson arrivals at {offered:.0f} jobs/s: "
        spread = _report(result, label, waits.take(), load, split=False)
        ctx.progress(f"scenario 3: Poisson arrivals: p99 {spread:.1f} ms")

        alone = max(2, min(count // 2, ALONE_MAX))
        load = await run_load(waits.one, count=alone, concurrency=1, time_limit=limit)
        single = _report(result, "one at a time: ", waits.take(), load, split=False)
        ctx.progress(f"scenario 3: one at a time: p99 {single:.1f} ms")
    trips = min(FLOOR_TRIPS, count)
    idle, busy = await idle_round_trips(stack.redis_port, trips, IDLE_SECONDS)
    result.row(
        f"floor: a Redis round trip after {IDLE_SECONDS * 1000:.0f} ms idle, p50",
        idle.p50,
        "ms",
        "back to back",
        busy.p50,
    )
    result.notes.append(
        f"closed loop: {CONCURRENCY} callers each start their next job when the last answers; "
        f"equal {JOB_SECONDS * 1000:.0f} ms jobs keep them in step, so finals come in bursts. "
        "Poisson: the same jobs arriving independently (seeded) at the rate the closed loop "
        "reached; the target is judged on the closed loop"
    )
    result.notes.append(
        "completedAt has millisecond resolution (truncated), so figures may read up to 1 ms high"
    )
    result.notes.append(
        "floor: the time a sleeping process takes to wake on this machine, from the client's "
        "side; a job's final write wakes the replica's sidecar, Redis, the sidecar again and "
        "the replica before the 200 goes out, and the client after it"
    )


async def idle_round_trips(port: int, trips: int, idle_s: float) -> tuple[Summary, Summary]:
    """Round trips (PING) to Redis each after ``idle_s`` of sleep, and the same back to back."""
    connection = redis.Redis(host="127.0.0.1", port=port)
    try:
        await connection.ping()
        idle: list[float] = []
        busy: list[float] = []
        for _ in range(trips):
            await asyncio.sleep(idle_s)
            idle.append(await _timed_ping(connection))
            busy.append(await _timed_ping(connection))
    finally:
        await connection.aclose()
    return summarize(idle), summarize(busy)


async def _timed_ping(connection: redis.Redis) -> float:
    started = time.perf_counter()
    await connection.ping()
    return (time.perf_counter() - started) * 1000


def _report(
    result: ScenarioResult, label: str, delays: Delays, load: LoadResult, *, split: bool
) -> float:
    """Rows for one load; returns its p99 (ms)."""
    if load.errors:
        result.notes.append(f"{label or 'closed loop: '}failed requests: {load.errors}")
    if not delays.every:
        raise RuntimeError(f"{label}no wait answered 200: {load.errors}")
    overall = summarize(delays.every)
    result.row(f"{label}final -> 200, p50", overall.p50, "ms")
    result.row(f"{label}final -> 200, p99", overall.p99, "ms")
    result.row(f"{label}final -> 200, max", overall.max, "ms")
    if split:  # rows and chart series by where the job ran
        for name, samples in (("same replica", delays.local), ("other replica", delays.remote)):
            if samples:
                part = summarize(samples)
                result.row(f"{name} ({part.count} jobs): p50", part.p50, "ms")
                result.row(f"{name} ({part.count} jobs): p99", part.p99, "ms")
                result.samples[f"woken on the {name}"] = samples
    return overall.p99
