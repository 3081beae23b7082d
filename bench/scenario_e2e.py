"""Scenario 2: short jobs end to end (submitted, run, final event at microservice-x) vs Celery.

Each client submits a job with `Prefer: wait=30` (answered when the job is final, like Celery's
`.get()`), then the next; the job counts once microservice-x holds its final event. Celery runs a
no-op task with as many worker processes as there are orchestrator replicas.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from celery import Celery

from . import client
from .callcount import Snapshot, difference
from .celery_peer import make_app, run_clients, worker_ready
from .job_times import final_received_at
from .load import LoadResult, run_load
from .meters import CpuMeter, command_deltas, redis_commands, wait_quiet
from .plan import Context
from .procs import PYTHON, Proc, wait_for
from .results import ScenarioResult, Target
from .stack import Service, Stack, require_runnable, wait_services
from .stats import per_op, rate, summarize

WAIT_HEADER = {"Prefer": "wait=30"}
COUNTED_JOBS = 20
COUNTED_LOADED_JOBS = 400


def _require() -> None:
    for module in ("sidecar", "job_orchestrator", "microservice_x"):
        require_runnable(module)


async def _ours(ctx: Context, replicas: int, result: ScenarioResult) -> dict[str, float]:
    stack = Stack(ctx.procs, ctx.root, ctx.subdir(f"s2-{replicas}"))
    orchestrators = [stack.orchestrator() for _ in range(replicas)]
    msx = stack.microservice_x()
    ctx.progress(f"scenario 2: starting {replicas} orchestrator replica(s) and microservice-x")
    wait_services([*orchestrators, msx])
    services: list[Service] = [*orchestrators, msx]
    groups = {f"app {s.proc.name}": s.proc.pid for s in services}
    groups |= {f"sidecar {s.proc.name}": s.sidecar.proc.pid for s in services}
    groups["redis"] = stack.redis.pid
    meter = CpuMeter(groups)
    submitted: dict[int, tuple[str, float]] = {}
    answered_ms: list[float] = []  #: submit -> the orchestrator's 200 (job final)
    async with client.session(ctx.plan.e2e_concurrency + 4) as http:

        async def job(i: int) -> None:
            target = orchestrators[i % replicas]
            answer = await client.call(
                http,
                "POST",
                f"{target.url}/jobs",
                json_body=client.SHORT_JOB,
                headers=WAIT_HEADER,
                expect=(200,),
            )
            submitted[i] = (answer.body["id"], answer.sent_at)
            answered_ms.append((answer.received_at - answer.sent_at) * 1000)

        await job(-1)  # one job to warm every connection and route
        submitted.clear()
        answered_ms.clear()
        commands_before = redis_commands(stack.redis_port)
        meter.start()
        load = await run_load(
            job,
            count=ctx.plan.e2e_count,
            concurrency=ctx.plan.e2e_concurrency,
            time_limit=ctx.plan.load_time_limit,
        )
        wait_quiet(list(groups.values()), timeout=ctx.plan.settle_s)
        cpu = meter.stop()
        commands = command_deltas(commands_before, redis_commands(stack.redis_port))
        views = await client.collect_views(
            http, msx.url, [job_id for job_id, _ in submitted.values()], timeout=ctx.plan.settle_s
        )
    if answered_ms:
        answered = summarize(answered_ms)
        label = f"{replicas} replica(s): submit -> 200 with the final job"
        result.row(f"{label}, p50", answered.p50, "ms")
        result.row(f"{label}, p99", answered.p99, "ms")
    figures = _figures(ctx, replicas, result, load, submitted, views, cpu)
    _command_rows(result, replicas, commands, len(submitted))
    return figures


def _command_rows(
    result: ScenarioResult, replicas: int, commands: dict[str, int], jobs: int
) -> None:
    """Redis commands per job (all clients: sidecars' state, streams and outbox), busiest
    first; Lua scripts' inner commands count separately from their EVALSHA."""
    if not jobs:
        return
    label = f"{replicas} replica(s): Redis commands per job"
    result.row(f"{label}, all", sum(commands.values()) / jobs, "commands")
    for name, calls in sorted(commands.items(), key=lambda kv: -kv[1]):
        if calls / jobs >= 0.5:
            result.row(f"  {name}", calls / jobs, "per job")


def _figures(
    ctx: Context,
    replicas: int,
    result: ScenarioResult,
    load: LoadResult,
    submitted: dict[int, tuple[str, float]],
    views: dict[str, dict[str, Any]],
    cpu: dict[str, float],
) -> dict[str, float]:
    if load.errors:
        result.notes.append(f"{replicas} replica(s): failed requests: {load.errors}")
    arrivals = {job_id: final_received_at(views[job_id]) for job_id in views}
    latencies = [
        (arrivals[job_id] - sent) * 1000  # type: ignore[operator]
        for job_id, sent in submitted.values()
        if arrivals.get(job_id) is not None
    ]
    missing = len(submitted) - len(latencies)
    if missing:
        result.notes.append(f"{replicas} replica(s): {missing} jobs' final events never arrived")
    if not latencies:
        raise RuntimeError(f"{replicas} replica(s): no job's final event reached microservice-x")
    first_sent = min(sent for _, sent in submitted.values())
    last_arrival = max(a for a in arrivals.values() if a is not None)
    done = len(latencies)
    sidecar_cpu = sum(v for k, v in cpu.items() if k.startswith("sidecar"))
    app_cpu = sum(v for k, v in cpu.items() if k.startswith("app"))
    figures = {
        "jobs_s": rate(done, last_arrival - first_sent),
        "p50": summarize(latencies).p50,
        "p99": summarize(latencies).p99,
        "sidecar_cpu_ms": per_op(sidecar_cpu * 1000, done),
        "app_cpu_ms": per_op(app_cpu * 1000, done),
        "redis_cpu_ms": per_op(cpu["redis"] * 1000, done),
    }
    result.samples[f"ours, {replicas} replica(s)"] = latencies
    result.extra[f"cpu_seconds_{replicas}_replicas"] = cpu
    ctx.progress(f"scenario 2: {replicas} replica(s): {figures['jobs_s']:.0f} jobs/s end to end")
    return figures


def _start_celery(ctx: Context, processes: int) -> tuple[Celery, Proc, Stack]:
    """A Celery worker on its own Redis (started early: it idles on a blocking broker read)."""
    stack = Stack(ctx.procs, ctx.root, ctx.subdir(f"s2-celery-{processes}"))
    worker = ctx.procs.start(
        "celery-worker",
        [PYTHON, "-m", "bench.celery_peer", "--broker", stack.redis_url]
        + ["--concurrency", str(processes)],
    )
    return make_app(stack.redis_url, with_task=False), worker, stack


async def _celery(
    ctx: Context, peer: tuple[Celery, Proc, Stack], processes: int, result: ScenarioResult
) -> dict[str, float]:
    app, worker, stack = peer
    wait_for("celery worker", lambda: worker_ready(app), timeout=60, procs=[worker])
    meter = CpuMeter({"worker": worker.pid, "redis": stack.redis.pid})
    await asyncio.to_thread(run_clients, app, count=2, concurrency=1, time_limit=10)
    meter.start()
    load = await asyncio.to_thread(
        run_clients,
        app,
        count=ctx.plan.e2e_count,
        concurrency=ctx.plan.e2e_concurrency,
        time_limit=ctx.plan.load_time_limit,
    )
    cpu = meter.stop()
    app.close()
    if load.errors:
        result.notes.append(f"Celery x{processes}: failed tasks: {load.errors}")
    if not load.ok:
        raise RuntimeError(f"Celery x{processes}: no task completed")
    lat = summarize(load.latencies_ms)
    result.samples[f"Celery, {processes} process(es)"] = load.latencies_ms
    ctx.progress(f"scenario 2: Celery x{processes}: {rate(load.ok, load.elapsed_s):.0f} tasks/s")
    return {
        "jobs_s": rate(load.ok, load.elapsed_s),
        "p50": lat.p50,
        "p99": lat.p99,
        "worker_cpu_ms": per_op(cpu["worker"] * 1000, load.ok),
        "redis_cpu_ms": per_op(cpu["redis"] * 1000, load.ok),
    }


async def _count_calls(ctx: Context, result: ScenarioResult) -> None:
    """A separate pass through counting proxies: sidecar calls per job, in both directions.

    Counted twice: jobs one at a time (every call a job needs) and jobs at the scenario's
    concurrency, where calls that queue behind one in flight share the next (batching).
    """
    stack = Stack(ctx.procs, ctx.root, ctx.subdir("s2-counted"))
    services = [stack.orchestrator(counted=True), stack.microservice_x(counted=True)]
    ctx.progress("scenario 2: counting sidecar calls per job (through counting proxies)")
    wait_services(services)
    pgids = [p.pid for p in ctx.procs.procs]
    alone = max(3, min(COUNTED_JOBS, ctx.plan.e2e_count // 4))
    loaded = max(alone, min(COUNTED_LOADED_JOBS, ctx.plan.e2e_count))
    async with client.session(ctx.plan.e2e_concurrency + 4) as http:

        async def job(_: int) -> None:
            await client.call(
                http,
                "POST",
                f"{services[0].url}/jobs",
                json_body=client.SHORT_JOB,
                headers=WAIT_HEADER,
                expect=(200,),
            )

        await job(0)
        for label, jobs, concurrency in (
            ("one at a time", alone, 1),
            (f"{ctx.plan.e2e_concurrency} at a time", loaded, ctx.plan.e2e_concurrency),
        ):
            wait_quiet(pgids, timeout=ctx.plan.settle_s)
            before = [await _snapshot(http, s) for s in services]
            load = await run_load(
                job, count=jobs, concurrency=concurrency, time_limit=ctx.plan.load_time_limit
            )
            wait_quiet(pgids, timeout=ctx.plan.settle_s)
            after = [await _snapshot(http, s) for s in services]
            _report_calls(result, label, load.ok, services, before, after)
    result.notes.append(
        "calls per job: counted through proxies; periodic calls made meanwhile (health checks, "
        "lease renewals) are included"
    )


def _report_calls(
    result: ScenarioResult,
    label: str,
    jobs: int,
    services: list[Service],
    before: list[Snapshot],
    after: list[Snapshot],
) -> None:
    if not jobs:
        result.notes.append(f"calls per job, {label}: no job completed")
        return
    calls: dict[str, int] = {}
    for service, old, new in zip(services, before, after, strict=True):
        for name, delta in difference(old, new).items():
            calls[f"{service.sidecar.app_id} {name}"] = delta
    result.row(
        f"sidecar calls per job, {label} ({jobs} jobs), all sidecars and both directions",
        sum(calls.values()) / jobs,
        "calls",
    )
    for name, delta in sorted(calls.items()):
        result.row(f"  {name}", delta / jobs, "calls per job")


async def _snapshot(http: aiohttp.ClientSession, service: Service) -> Snapshot:
    async with http.get(f"http://127.0.0.1:{service.stats_port}/") as resp:
        snapshot: Snapshot = await resp.json()
        return snapshot


async def run(ctx: Context, result: ScenarioResult) -> None:
    """Fill `result` as figures come in, so a later failure keeps what was measured."""
    _require()
    await _count_calls(ctx, result)
    ctx.procs.stop_all()
    for replicas in (1, 2):
        celery_app = _start_celery(ctx, replicas)
        ours = await _ours(ctx, replicas, result)
        ctx.procs.stop_all(keep=[celery_app[1], celery_app[2].redis])
        peer = await _celery(ctx, celery_app, replicas, result)
        ctx.procs.stop_all()
        label = f"{replicas} replica(s)"
        celery = f"Celery ({replicas} process(es))"
        throughput = result.row(
            f"{label}: jobs/s", ours["jobs_s"], "jobs/s", celery, peer["jobs_s"]
        )
        result.row(f"{label}: p50", ours["p50"], "ms", celery, peer["p50"])
        result.row(f"{label}: p99", ours["p99"], "ms", celery, peer["p99"])
        ours_cpu = ours["sidecar_cpu_ms"] + ours["app_cpu_ms"] + ours["redis_cpu_ms"]
        peer_cpu = peer["worker_cpu_ms"] + peer["redis_cpu_ms"]
        result.row(f"{label}: CPU per job, all server processes", ours_cpu, "ms", celery, peer_cpu)
        result.row(f"{label}: sidecar CPU per job (all sidecars)", ours["sidecar_cpu_ms"], "ms")
        result.row(f"{label}: service CPU per job (apps)", ours["app_cpu_ms"], "ms")
        result.row(
            f"{label}: Redis CPU per job", ours["redis_cpu_ms"], "ms", celery, peer["redis_cpu_ms"]
        )
        if throughput.ratio is not None:
            result.targets.append(
                Target(
                    f"{label}: jobs/s >= 1.0x Celery's",
                    throughput.ratio,
                    1.0,
                    throughput.ratio >= 1.0,
                )
            )
