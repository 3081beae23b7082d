"""Scenario 6: what one GetState / SaveState / PublishEvent costs through the project's sidecar.

Each operation is made with the official SDK at concurrency 16 against the sidecar and against a
do-nothing gRPC server on the same stubs, and directly with redis-py; the load client is a
separate process, and the server's CPU is read around the timed calls.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

from .plan import Context
from .procs import PYTHON, free_port, tcp_open, wait_for
from .results import ScenarioResult, Target
from .stack import Stack, require_runnable, wait_sidecar_outbound
from .stats import per_op, rate, summarize

CONCURRENCY = 16
OPS = ("get", "save", "publish")
#: Dapr's published figures (contract section 8): p50 a daprd adds per operation; a state get
#: costs daprd about 0.06 ms of CPU.
DAPRD_ADDED_P50_MS = {"get": 0.3, "save": 0.3, "publish": 0.5}
CPU_RATIO_LIMIT = 1.3
ADDED_LATENCY_LIMIT = 2.0


async def _op_client(
    ctx: Context, target: str, address: str, pgid: int, http_port: int | None
) -> dict[str, list[dict[str, Any]]]:
    """Run bench.op_client in its own process: per operation, the loaded then the unloaded phase."""
    loaded, unloaded = ctx.plan.sidecar_ops, max(20, ctx.plan.sidecar_ops // 4)
    args = [PYTHON, "-m", "bench.op_client", target, "--address", address]
    for op in OPS:
        args += ["--op", op]
    args += ["--phase", f"{CONCURRENCY}:{loaded}", "--phase", f"1:{unloaded}"]
    args += ["--time-limit", str(ctx.plan.load_time_limit), "--server-pgid", str(pgid)]
    env = dict(os.environ)
    if http_port is not None:
        env["DAPR_HTTP_PORT"] = str(http_port)  # where the SDK checks health before a call
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=ctx.root,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(), 2 * len(OPS) * ctx.plan.load_time_limit + 60
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"op client {target} did not finish") from None
    except asyncio.CancelledError:  # Ctrl-C or the scenario's budget: leave no client behind
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"op client {target} failed: {err.decode()[-1500:]}")
    answer: dict[str, list[dict[str, Any]]] = json.loads(out)
    for op, phases in answer.items():
        for phase in phases:
            if not phase["latencies_ms"]:
                raise RuntimeError(f"{target} {op}: no call succeeded: {phase['errors']}")
    return answer


@dataclass
class Figures:
    """One target's figures for one operation: loaded (concurrency 16) and unloaded (1)."""

    ops_s: float
    p50: float
    p99: float
    cpu_ms: float  #: server CPU per operation, loaded phase
    p50_alone: float  #: p50 at concurrency 1: the round trip without queueing
    errors: int
    samples: list[float]


def _figures(phases: list[dict[str, Any]]) -> Figures:
    loaded, alone = phases
    lat = summarize(loaded["latencies_ms"])
    return Figures(
        ops_s=rate(lat.count, loaded["elapsed_s"]),
        p50=lat.p50,
        p99=lat.p99,
        cpu_ms=per_op(loaded["server_cpu_s"] * 1000, lat.count),
        p50_alone=summarize(alone["latencies_ms"]).p50,
        errors=sum(loaded["errors"].values()) + sum(alone["errors"].values()),
        samples=loaded["latencies_ms"],
    )


async def run(ctx: Context, result: ScenarioResult) -> None:
    """Fill `result` as figures come in, so a later failure keeps what was measured."""
    require_runnable("sidecar")
    stack = Stack(ctx.procs, ctx.root, ctx.subdir("s6"))
    sidecar = stack.sidecar("bench-client")
    noop_port, noop_http = free_port(), free_port()
    noop = ctx.procs.start(
        "noop-grpc",
        [PYTHON, "-m", "bench.floors", "grpc", "--port", str(noop_port)]
        + ["--http-port", str(noop_http)],
    )
    ctx.progress("scenario 6: waiting for the sidecar and the do-nothing gRPC server")
    wait_sidecar_outbound(sidecar)
    wait_for("noop-grpc", lambda: tcp_open(noop_port), timeout=30, procs=[noop])
    ctx.progress("scenario 6: the three operations via the sidecar")
    via_sidecar = await _op_client(
        ctx, "sdk", sidecar.grpc_address, sidecar.proc.pid, sidecar.http_port
    )
    ctx.progress("scenario 6: the same via the do-nothing gRPC server")
    via_noop = await _op_client(ctx, "sdk", f"127.0.0.1:{noop_port}", noop.pid, noop_http)
    ctx.progress("scenario 6: the same directly with redis-py")
    via_redis = await _op_client(ctx, "redis", stack.redis_url, stack.redis.pid, None)
    for op in OPS:
        side, floor, direct = (
            _figures(answer[op]) for answer in (via_sidecar, via_noop, via_redis)
        )
        ctx.progress(
            f"scenario 6: {op}: sidecar {side.ops_s:.0f} ops/s, do-nothing {floor.ops_s:.0f}, "
            f"redis-py {direct.ops_s:.0f}"
        )
        _report_op(result, op, side, floor, direct)
        result.samples[f"{op} via sidecar"] = side.samples
        result.samples[f"{op} do-nothing gRPC"] = floor.samples
        result.samples[f"{op} redis-py"] = direct.samples
    result.notes.append(
        "ops/s, p50, p99 and CPU are at concurrency 16 (closed loop, so p50 includes queueing in "
        "the one Python client); 'added p50' uses a concurrency-1 pass: sidecar p50 - do-nothing "
        "p50, i.e. what the sidecar's own work adds to a call"
    )


def _report_op(
    result: ScenarioResult, op: str, side: Figures, floor: Figures, direct: Figures
) -> None:
    noop = "do-nothing gRPC server"
    result.row(f"{op}: ops/s", side.ops_s, "ops/s", noop, floor.ops_s)
    result.row(f"{op}: ops/s", side.ops_s, "ops/s", "direct redis-py", direct.ops_s)
    result.row(f"{op}: p50", side.p50, "ms", noop, floor.p50)
    result.row(f"{op}: p99", side.p99, "ms", noop, floor.p99)
    result.row(f"{op}: p50", side.p50, "ms", "direct redis-py", direct.p50)
    cpu = result.row(f"{op}: server CPU per op", side.cpu_ms, "ms", noop, floor.cpu_ms)
    if op == "get":
        result.row(f"{op}: server CPU per op", side.cpu_ms, "ms", "daprd (published)", 0.06)
    result.row(f"{op}: p50 at concurrency 1", side.p50_alone, "ms", noop, floor.p50_alone)
    added_value = side.p50_alone - floor.p50_alone
    name = f"{op}: added p50 (sidecar - do-nothing, c=1)"
    added = result.row(name, added_value, "ms", "direct redis-py p50 (c=1)", direct.p50_alone)
    result.row(name, added_value, "ms", "daprd added p50 (published)", DAPRD_ADDED_P50_MS[op])
    if cpu.ratio is None:
        result.notes.append(f"{op}: the floor's CPU was below the clock tick; no CPU ratio")
    else:
        result.targets.append(
            Target(
                f"{op}: sidecar CPU/op <= {CPU_RATIO_LIMIT}x do-nothing server's",
                cpu.ratio,
                CPU_RATIO_LIMIT,
                cpu.ratio <= CPU_RATIO_LIMIT,
            )
        )
    if added.ratio is not None:
        result.targets.append(
            Target(
                f"{op}: added p50 <= {ADDED_LATENCY_LIMIT}x direct redis-py p50",
                added.ratio,
                ADDED_LATENCY_LIMIT,
                added.ratio <= ADDED_LATENCY_LIMIT,
            )
        )
    errors = side.errors + floor.errors + direct.errors
    if errors:
        result.notes.append(f"{op}: {errors} calls failed (excluded from the figures)")
