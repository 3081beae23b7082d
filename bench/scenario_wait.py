"""Scenario 3: how soon a waiting request answers 200 after its job becomes final.

Jobs of 100 ms go through `POST /Jobs/StartJobWithTimeout` on two replicas, so about half are
run by the other replica and the wait is woken across replicas (by the broadcast subscription).
Latency = the client's receipt of the 200 - the job's completedAt (millisecond resolution).
"""

from __future__ import annotations

from typing import Any

from . import client
from .load import run_load
from .plan import Context
from .results import ScenarioResult, Target
from .stack import Stack, require_runnable, wait_services
from .stats import summarize

JOB_SECONDS = 0.1
CONCURRENCY = 8
P99_LIMIT_MS = 10.0


async def run(ctx: Context, result: ScenarioResult) -> None:
    """Fill `result` as figures come in, so a later failure keeps what was measured."""
    require_runnable("sidecar")
    require_runnable("job_orchestrator")
    stack = Stack(ctx.procs, ctx.root, ctx.subdir("s3"))
    replicas = [stack.orchestrator(), stack.orchestrator()]
    ctx.progress("scenario 3: starting two orchestrator replicas")
    wait_services(replicas)
    body: dict[str, Any] = {"type": "wait", "input": {"seconds": JOB_SECONDS}, "timeoutSeconds": 30}
    local: list[float] = []
    remote: list[float] = []
    async with client.session(CONCURRENCY + 2) as http:

        async def wait_one(i: int) -> None:
            replica = replicas[i % len(replicas)]
            answer = await client.call(
                http, "POST", f"{replica.url}/Jobs/StartJobWithTimeout", json_body=body
            )
            job = answer.body
            if job.get("status") != "Completed":
                raise RuntimeError(f"job ended {job.get('status')}: {job.get('error')}")
            delay = (answer.received_at - client.job_time(job, "completedAt")) * 1000
            same = str(job.get("worker", "")).endswith(f"-{replica.proc.pid}")
            (local if same else remote).append(delay)

        await wait_one(0)
        local.clear()
        remote.clear()
        load = await run_load(
            wait_one,
            count=ctx.plan.wait_count,
            concurrency=CONCURRENCY,
            time_limit=ctx.plan.load_time_limit,
        )
    if load.errors:
        result.notes.append(f"failed requests: {load.errors}")
    every = local + remote
    if not every:
        raise RuntimeError(f"no wait answered 200: {load.errors}")
    overall = summarize(every)
    result.row("final -> 200, p50", overall.p50, "ms")
    result.row("final -> 200, p99", overall.p99, "ms")
    result.row("final -> 200, max", overall.max, "ms")
    for name, samples in (("same replica", local), ("other replica", remote)):
        if samples:
            part = summarize(samples)
            result.row(f"{name} ({part.count} jobs): p50", part.p50, "ms")
            result.row(f"{name} ({part.count} jobs): p99", part.p99, "ms")
            result.samples[f"woken on the {name}"] = samples
    result.targets.append(
        Target(
            f"p99 <= {P99_LIMIT_MS:.0f} ms", overall.p99, P99_LIMIT_MS, overall.p99 <= P99_LIMIT_MS
        )
    )
    result.notes.append(
        "completedAt has millisecond resolution (truncated), so figures may read up to 1 ms high"
    )
    ctx.progress(f"scenario 3: p50 {overall.p50:.1f} ms, p99 {overall.p99:.1f} ms")
