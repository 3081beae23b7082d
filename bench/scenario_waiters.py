"""Scenario 4: one replica holding 1,000 / 10,000 concurrent waiting requests.

The replica runs API-only, so its jobs stay New and every `GET /jobs/{id}?wait=N` waits. Each
waiter is a raw keep-open HTTP/1.1 connection (cheap on the client side); the replica's memory,
its and its sidecar's CPU, and the state-store commands reaching Redis are taken while they wait.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from . import client
from .meters import (
    CpuMeter,
    reads_and_writes,
    redis_commands,
    rss_mb,
    state_commands,
    wait_quiet,
)
from .plan import Context
from .results import ScenarioResult, Target
from .stack import Service, Stack, require_runnable, wait_services

JOBS = 10
WAIT_SECONDS = 600
BATCH = 250
MEMORY_LIMIT_MB = 300.0
FULL_SIZE = 10_000


class Waiters:
    """W open requests; each has a task that finishes when the server answers."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.answers: list[asyncio.Task[bytes]] = []

    async def open(self, port: int, path: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        self.writers.append(writer)
        self.answers.append(asyncio.create_task(reader.read(64)))

    def answered(self) -> dict[int, bytes]:
        """The first bytes of every answer received so far, by waiter index."""
        return {
            i: t.result()
            for i, t in enumerate(self.answers)
            if t.done() and not t.cancelled() and t.exception() is None
        }

    async def close(self) -> None:
        for task in self.answers:
            task.cancel()
        await asyncio.gather(*self.answers, return_exceptions=True)
        for writer in self.writers:
            writer.transport.abort()


async def _new_jobs(http: aiohttp.ClientSession, replica: Service) -> list[str]:
    ids = []
    for _ in range(JOBS):
        answer = await client.call(
            http, "POST", f"{replica.url}/jobs", json_body=client.SHORT_JOB, expect=(202,)
        )
        ids.append(answer.body["id"])
    return ids


async def _hold(
    ctx: Context, stack: Stack, replica: Service, http: aiohttp.ClientSession, count: int
) -> dict[str, Any]:
    """Open `count` waiters on fresh New jobs, measure while they wait, then release them by
    canceling the jobs (each waiter must then answer 200)."""
    job_ids = await _new_jobs(http, replica)
    meter = CpuMeter({"replica": replica.proc.pid, "sidecar": replica.sidecar.proc.pid})
    pgids = list(meter.groups.values())
    wait_quiet(pgids, timeout=10)
    rss_before = rss_mb(replica.proc.pid)
    # The replica's own background commands over a window as long as the hold, for reference.
    commands_idle = redis_commands(stack.redis_port)
    await asyncio.sleep(ctx.plan.waiter_hold_s)
    commands_start = redis_commands(stack.redis_port)
    meter.start()
    waiters = Waiters()
    try:
        for first in range(0, count, BATCH):
            batch = range(first, min(count, first + BATCH))
            await asyncio.gather(
                *(
                    waiters.open(replica.port, f"/jobs/{job_ids[i % JOBS]}?wait={WAIT_SECONDS}")
                    for i in batch
                )
            )
        # Admission is done once the replica and its sidecar stop working on the new requests.
        wait_quiet(pgids, timeout=30)
        admission_cpu = meter.stop()
        commands_admitted = redis_commands(stack.redis_port)
        meter.start()
        await asyncio.sleep(ctx.plan.waiter_hold_s)
        hold_cpu = meter.stop()
        commands_held = redis_commands(stack.redis_port)
        rss_held = rss_mb(replica.proc.pid)
        early = waiters.answered()
        release_started = time.perf_counter()
        for job_id in job_ids:
            await client.call(http, "POST", f"{replica.url}/jobs/{job_id}/cancel")
        await asyncio.wait(waiters.answers, timeout=ctx.plan.settle_s + count / 1000)
        release_ms = (time.perf_counter() - release_started) * 1000
        late = {i: a for i, a in waiters.answered().items() if i not in early}
        released = [a for a in late.values() if a.startswith(b"HTTP/1.1 200")]
    finally:
        await waiters.close()
    return {
        "rss_before_mb": rss_before,
        "rss_mb": rss_held,
        "admission_cpu_s": admission_cpu,
        "hold_cpu_s": hold_cpu,
        "idle_commands": state_commands(commands_idle, commands_start),
        "admission_commands": state_commands(commands_start, commands_admitted),
        "hold_commands": state_commands(commands_admitted, commands_held),
        "answered_early": len(early),
        "first_early_answer": next(iter(early.values()), b"").decode(errors="replace"),
        "released_200": len(released),
        "released_other": len(late) - len(released),
        "unanswered": count - len(early) - len(late),
        "release_ms": release_ms,
    }


async def run(ctx: Context, result: ScenarioResult) -> None:
    """Fill `result` as figures come in, so a later failure keeps what was measured."""
    require_runnable("sidecar")
    require_runnable("job_orchestrator")
    for count in ctx.plan.waiters:
        # A fresh replica per size: Python keeps the memory of a former, larger crowd.
        stack = Stack(ctx.procs, ctx.root, ctx.subdir(f"s4-{count}"))
        # No requeue (nor its ledger, handover.py): their reads come on timers (the ledger
        # directory every 30 s, the scenario's New jobs at 60 s), not from waiting, and would
        # make the comparison with the idle window a matter of phase.
        env = {
            "APP_ENV": "api",
            "JOB_MAX_WAIT_SECONDS": str(WAIT_SECONDS),
            "JOB_REQUEUE_AFTER_SECONDS": "0",
        }
        replica = stack.orchestrator(env)
        ctx.progress("scenario 4: starting one API-only orchestrator replica")
        wait_services([replica])
        async with client.session(4) as http:
            ctx.progress(f"scenario 4: opening {count} waiting requests")
            held = await _hold(ctx, stack, replica, http, count)
        result.extra[f"{count}_waiters"] = held
        _report(result, count, held)
        ctx.progress(
            f"scenario 4: {count} waiters: {held['rss_mb']:.0f} MB, "
            f"{reads_and_writes(held['hold_commands'])[0]} state reads while waiting"
        )
        ctx.procs.stop_all()
    if FULL_SIZE not in ctx.plan.waiters:
        result.notes.append(f"the {FULL_SIZE:,}-waiter memory target is measured in full mode only")


def _report(result: ScenarioResult, count: int, held: dict[str, Any]) -> None:
    label = f"{count:,} waiters"
    if held["answered_early"]:
        result.notes.append(
            f"{label}: {held['answered_early']} requests were answered before the hold ended, "
            f"e.g. {held['first_early_answer'][:60]!r}"
        )
    result.row(
        f"{label}: replica RSS", held["rss_mb"], "MB", "same replica idle", held["rss_before_mb"]
    )
    # Per waiter actually held: requests answered early (e.g. 503) hold no memory.
    holding = count - held["answered_early"]
    growth_kb = (held["rss_mb"] - held["rss_before_mb"]) * 1024 / max(holding, 1)
    result.row(f"{label}: memory per waiter", growth_kb, "KB")
    admission = held["admission_cpu_s"]
    result.row(
        f"{label}: replica CPU to admit one waiter", admission["replica"] * 1000 / count, "ms"
    )
    result.row(
        f"{label}: sidecar CPU to admit one waiter", admission["sidecar"] * 1000 / count, "ms"
    )
    hold = held["hold_cpu_s"]
    result.row(f"{label}: replica CPU while holding", hold["replica"] * 1000, "ms total")
    result.row(f"{label}: sidecar CPU while holding", hold["sidecar"] * 1000, "ms total")
    on_arrival = reads_and_writes(held["admission_commands"])
    result.row(f"{label}: state reads on arrival", on_arrival[0], "reads")
    result.row(f"{label}: state writes on arrival", on_arrival[1], "writes")
    reads, writes = reads_and_writes(held["hold_commands"])
    idle_reads, idle_writes = reads_and_writes(held["idle_commands"])
    idle = "same replica idle, same time"
    result.row(f"{label}: state reads while waiting", reads, "reads", idle, idle_reads)
    result.row(f"{label}: state writes while waiting", writes, "writes", idle, idle_writes)
    result.targets.append(
        Target(
            f"{label}: no state reads caused by waiting (reads <= idle window's)",
            reads,
            idle_reads,
            reads <= idle_reads,
        )
    )
    result.row(
        f"{label}: answered 200 after their jobs were canceled", held["released_200"], "requests"
    )
    result.row(
        f"{label}: time to answer them all after the cancels began", held["release_ms"], "ms"
    )
    if held["released_200"] != count:
        result.notes.append(
            f"{label}: {held['released_200']} of {count} waiters answered 200 after release, "
            f"{held['released_other']} answered something else, "
            f"{held['unanswered']} did not answer in time"
        )
    if count >= FULL_SIZE:
        if holding < count:
            result.notes.append(
                f"{label}: RSS taken with {holding:,} waiters held, not {count:,}: "
                "the memory target counts as missed"
            )
        result.targets.append(
            Target(
                f"{label}: replica RSS < {MEMORY_LIMIT_MB:.0f} MB",
                held["rss_mb"],
                MEMORY_LIMIT_MB,
                held["rss_mb"] < MEMORY_LIMIT_MB and holding == count,
            )
        )
