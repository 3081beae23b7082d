"""Scenario 1: how many `POST /jobs` (202) one orchestrator replica answers per second.

The replica runs API-only (APP_ENV=api) so no job runs meanwhile; floors at the same
concurrency: a bare FastAPI endpoint on the same uvicorn stack, and the job's Redis writes (record
plus event, atomically) made directly with redis-py.
"""

from __future__ import annotations

import json
import uuid
from functools import partial

import redis.asyncio as aioredis

from . import client
from .floors import redis_submit
from .load import LoadResult, run_load
from .meters import CpuMeter
from .plan import Context
from .procs import PYTHON, free_port, http_ok, wait_for
from .results import ScenarioResult
from .stack import Stack, require_runnable, wait_services
from .stats import per_op, rate, summarize

JOB = json.dumps({**client.SHORT_JOB, "id": "x", "status": "New", "pad": "x" * 300}).encode()


async def _http_load(ctx: Context, url: str, concurrency: int) -> LoadResult:
    async with client.session(concurrency) as http:

        async def submit(_: int) -> None:
            await client.call(http, "POST", url, json_body=client.SHORT_JOB, expect=(202,))

        await submit(0)
        return await run_load(
            submit,
            count=ctx.plan.submit_count,
            concurrency=concurrency,
            time_limit=ctx.plan.load_time_limit,
        )


async def _redis_load(ctx: Context, url: str, concurrency: int) -> LoadResult:
    conn = aioredis.Redis.from_url(url, max_connections=concurrency + 4)
    try:

        async def submit(_: int) -> None:
            await redis_submit(conn, f"bench||{uuid.uuid4()}", JOB, "bench-job-events")

        return await run_load(
            submit,
            count=ctx.plan.submit_count,
            concurrency=concurrency,
            time_limit=ctx.plan.load_time_limit,
        )
    finally:
        await conn.aclose()


def _check(load: LoadResult, what: str, result: ScenarioResult) -> None:
    """Failed requests are reported (and left out of the figures); a run with none is an error."""
    if not load.ok:
        raise RuntimeError(f"{what}: no request succeeded: {load.errors}")
    if load.errors:
        failed = sum(load.errors.values())
        result.row(f"{what}: failed requests", failed, "requests")
        result.notes.append(f"{what}: {failed} of {failed + load.ok} failed: {load.errors}")


async def run(ctx: Context, result: ScenarioResult) -> None:
    """Fill `result` as figures come in, so a later failure keeps what was measured."""
    require_runnable("job_orchestrator")
    require_runnable("sidecar")
    stack = Stack(ctx.procs, ctx.root, ctx.subdir("s1"))
    orchestrator = stack.orchestrator({"APP_ENV": "api"})
    bare_port = free_port()
    bare = ctx.procs.start(
        "bare-fastapi", [PYTHON, "-m", "bench.floors", "http", "--port", str(bare_port)]
    )
    ctx.progress("scenario 1: waiting for the orchestrator (API only), its sidecar, the floor")
    wait_services([orchestrator])
    bare_url = f"http://127.0.0.1:{bare_port}"
    wait_for("bare-fastapi", partial(http_ok, f"{bare_url}/healthz"), timeout=30, procs=[bare])
    meter = CpuMeter(
        {"orchestrator": orchestrator.proc.pid, "sidecar": orchestrator.sidecar.proc.pid}
    )
    for concurrency in ctx.plan.submit_concurrency:
        meter.start()
        ours = await _http_load(ctx, f"{orchestrator.url}/jobs", concurrency)
        cpu = meter.stop()
        _check(ours, f"POST /jobs c={concurrency}", result)
        floor = await _http_load(ctx, f"{bare_url}/jobs", concurrency)
        _check(floor, f"bare FastAPI c={concurrency}", result)
        direct = await _redis_load(ctx, stack.redis_url, concurrency)
        _check(direct, f"redis-py c={concurrency}", result)
        jobs_s = rate(ours.ok, ours.elapsed_s)
        ctx.progress(f"scenario 1: c={concurrency}: {jobs_s:.0f} jobs/s")
        label = f"c={concurrency}"
        result.row(
            f"{label}: jobs/s", jobs_s, "jobs/s", "bare FastAPI", rate(floor.ok, floor.elapsed_s)
        )
        result.row(
            f"{label}: jobs/s",
            jobs_s,
            "jobs/s",
            "direct redis-py writes",
            rate(direct.ok, direct.elapsed_s),
        )
        mine, bare_lat = summarize(ours.latencies_ms), summarize(floor.latencies_ms)
        result.row(f"{label}: p50", mine.p50, "ms", "bare FastAPI", bare_lat.p50)
        result.row(f"{label}: p99", mine.p99, "ms", "bare FastAPI", bare_lat.p99)
        result.row(
            f"{label}: orchestrator CPU per job", per_op(cpu["orchestrator"] * 1000, ours.ok), "ms"
        )
        result.row(f"{label}: sidecar CPU per job", per_op(cpu["sidecar"] * 1000, ours.ok), "ms")
        result.samples[f"POST /jobs {label}"] = ours.latencies_ms
        result.samples[f"bare FastAPI {label}"] = floor.latencies_ms
