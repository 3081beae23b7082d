"""Load client of scenario 6, run as its own process so its CPU is apart from the measured server.

`python -m bench.op_client sdk|redis --address A --op OP ... --phase C:N ...` prints one JSON
object: per operation and phase (concurrency C, N calls) latencies (ms), elapsed s, server CPU,
errors. The SDK variant uses the official aio DaprClient (which reads DAPR_HTTP_PORT at import,
hence the separate process). `pair --address A --floor-address B --phase 1:N` makes each call
through A and through B back to back, alternating which goes first, so the two latencies are
compared under the same machine conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .load import paced, run_load
from .procs import cpu_seconds

STORE = "statestore"
PUBSUB = "pubsub"
TOPIC = "bench-events"
KEYS = 64
VALUE = json.dumps({"status": "New", "input": {"seconds": 0}, "pad": "x" * 200}).encode()


@dataclass(frozen=True)
class Job:
    ops: tuple[str, ...]
    #: (concurrency, count, rate or None), measured one after the other
    phases: tuple[tuple[int, int, float | None], ...]
    time_limit: float  #: per phase
    server_pgid: int | None


async def _timed(job: Job, calls: Mapping[str, Callable[[int], Awaitable[Any]]]) -> dict[str, Any]:
    """Seed the keys, then per operation: warm up, time each phase and the server's CPU."""
    seed = calls["seed"]
    for n in range(KEYS):
        await seed(n)
    answer: dict[str, list[dict[str, Any]]] = {}
    for op in job.ops:
        operation = calls[op]
        await operation(0)

        async def call(i: int, operation: Callable[[int], Awaitable[Any]] = operation) -> None:
            await operation(i)

        phases = answer.setdefault(op, [])
        for concurrency, count, rate in job.phases:
            cpu_before = cpu_seconds(job.server_pgid) if job.server_pgid else 0.0
            result = await run_load(
                call,
                count=count,
                concurrency=concurrency,
                time_limit=job.time_limit,
                start_at=paced(count, rate) if rate else None,
            )
            cpu_after = cpu_seconds(job.server_pgid) if job.server_pgid else 0.0
            phases.append(
                {
                    "concurrency": concurrency,
                    "rate": rate,
                    "latencies_ms": result.latencies_ms,
                    "elapsed_s": result.elapsed_s,
                    "errors": result.errors,
                    "timed_out": result.timed_out,
                    "server_cpu_s": cpu_after - cpu_before,
                }
            )
    return answer


def _phase(text: str) -> tuple[int, int, float | None]:
    """CONCURRENCY:COUNT, or CONCURRENCY:COUNT@RATE for a paced phase."""
    concurrency, _, rest = text.partition(":")
    count, _, rate = rest.partition("@")
    return int(concurrency), int(count), float(rate) if rate else None


def _sdk_calls(client: Any) -> dict[str, Callable[[int], Awaitable[Any]]]:
    return {
        "seed": lambda i: client.save_state(STORE, f"bench-{i}", VALUE),
        "get": lambda i: client.get_state(STORE, f"bench-{i % KEYS}"),
        "save": lambda i: client.save_state(STORE, f"bench-{i % KEYS}", VALUE),
        "publish": lambda i: client.publish_event(
            PUBSUB, TOPIC, VALUE, data_content_type="application/json"
        ),
    }


async def _sdk_load(address: str, job: Job) -> dict[str, Any]:
    from dapr.aio.clients import DaprClient

    async with DaprClient(address=address) as client:
        return await _timed(job, _sdk_calls(client))


async def _paired(
    job: Job,
    measured: Mapping[str, Callable[[int], Awaitable[Any]]],
    floor: Mapping[str, Callable[[int], Awaitable[Any]]],
) -> dict[str, Any]:
    """Per operation, N pairs of sequential calls; errors are counted, their pair dropped."""
    for n in range(KEYS):
        await measured["seed"](n)
        await floor["seed"](n)
    count = sum(count for _, count, _ in job.phases)
    answer: dict[str, dict[str, Any]] = {}
    for op in job.ops:
        first, second = measured[op], floor[op]
        await first(0)
        await second(0)
        pairs: dict[str, Any] = {"measured_ms": [], "floor_ms": [], "errors": 0}
        started = time.perf_counter()
        for i in range(count):
            if time.perf_counter() - started > job.time_limit:
                break
            order = ((first, "measured_ms"), (second, "floor_ms"))
            times: dict[str, float] = {}
            try:
                for call, name in order if i % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    await call(i)
                    times[name] = (time.perf_counter() - t0) * 1000
            except Exception:  # counted; a failed pair is left out of both lists
                pairs["errors"] += 1
                continue
            for name, ms in times.items():
                pairs[name].append(ms)
        answer[op] = pairs
    return answer


async def _pair_load(address: str, floor_address: str, job: Job) -> dict[str, Any]:
    from dapr.aio.clients import DaprClient

    async with (
        DaprClient(address=address) as measured,
        DaprClient(address=floor_address) as floor,
    ):
        return await _paired(job, _sdk_calls(measured), _sdk_calls(floor))


async def _redis_load(url: str, job: Job) -> dict[str, Any]:
    import redis.asyncio as redis

    from .floors import redis_get, redis_publish, redis_save

    client = redis.Redis.from_url(url, max_connections=max(c for c, _, _ in job.phases) + 4)
    try:
        return await _timed(
            job,
            {
                "seed": lambda i: redis_save(client, f"bench-{i}", VALUE),
                "get": lambda i: redis_get(client, f"bench-{i % KEYS}"),
                "save": lambda i: redis_save(client, f"bench-{i % KEYS}", VALUE),
                "publish": lambda i: redis_publish(client, TOPIC, VALUE),
            },
        )
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.op_client", description=__doc__)
    parser.add_argument("target", choices=["sdk", "redis", "pair"])
    parser.add_argument("--address", required=True, help="host:port (sdk) or redis:// URL")
    parser.add_argument("--floor-address", help="pair: the host:port compared with --address")
    parser.add_argument("--op", choices=["get", "save", "publish"], action="append", required=True)
    parser.add_argument(
        "--phase", type=_phase, action="append", required=True, help="CONCURRENCY:COUNT[@RATE]"
    )
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--server-pgid", type=int, help="process group whose CPU is measured")
    options = parser.parse_args()
    job = Job(tuple(options.op), tuple(options.phase), options.time_limit, options.server_pgid)
    if options.target == "pair":
        if not options.floor_address:
            parser.error("pair needs --floor-address")
        answer = asyncio.run(_pair_load(options.address, options.floor_address, job))
    elif options.target == "sdk":
        answer = asyncio.run(_sdk_load(options.address, job))
    else:
        answer = asyncio.run(_redis_load(options.address, job))
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
