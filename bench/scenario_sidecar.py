"""Scenario 6: what one GetState / SaveState / PublishEvent costs through the project's sidecar.

Each operation is made with the official SDK against the sidecar and against a do-nothing gRPC
server on the same stubs, and directly with redis-py; the load client is a separate process, and
the server's CPU is read around the timed calls. Three phases per operation: closed loop at
concurrency 16 (throughput, latency), paced at a fixed rate (CPU per call: a gRPC server's CPU
per call falls as its throughput rises, so servers are compared at the same offered load), and
concurrency 1 (the latency a call adds). The sidecar and the floor alternate over several rounds
so drift on the shared machine hits both alike.
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
PACED_RATE = 2000.0  #: calls/s of the paced phase, below both servers' capacity here
PACED_CONCURRENCY = 32  #: in-flight cap of the paced phase (it only matters if a server lags)
OPS = ("get", "save", "publish")
#: Dapr's published figures (contract section 8): p50 a daprd adds per operation; a state get
#: costs daprd about 0.06 ms of CPU.
DAPRD_ADDED_P50_MS = {"get": 0.3, "save": 0.3, "publish": 0.5}
CPU_RATIO_LIMIT = 1.3
ADDED_LATENCY_LIMIT = 2.0


async def _client(ctx: Context, label: str, args: list[str], http_port: int | None) -> Any:
    """Run bench.op_client in its own process and return its JSON answer."""
    env = dict(os.environ)
    if http_port is not None:
        env["DAPR_HTTP_PORT"] = str(http_port)  # where the SDK checks health before a call
    args += ["--time-limit", str(ctx.plan.load_time_limit)]
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=ctx.root,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(), 3 * len(OPS) * ctx.plan.load_time_limit + 60
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"op client {label} did not finish") from None
    except asyncio.CancelledError:  # Ctrl-C or the scenario's budget: leave no client behind
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"op client {label} failed: {err.decode()[-1500:]}")
    return json.loads(out)


def _base_args(target: str, address: str) -> list[str]:
    args = [PYTHON, "-m", "bench.op_client", target, "--address", address]
    for op in OPS:
        args += ["--op", op]
    return args


async def _load_client(
    ctx: Context, target: str, address: str, pgid: int, http_port: int | None, phases: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per operation, the given phases (CONCURRENCY:COUNT[@RATE]) with the server's CPU."""
    args = _base_args(target, address) + ["--server-pgid", str(pgid)]
    for phase in phases:
        args += ["--phase", phase]
    answer: dict[str, list[dict[str, Any]]] = await _client(ctx, target, args, http_port)
    for op, results in answer.items():
        for phase_result in results:
            if not phase_result["latencies_ms"]:
                raise RuntimeError(f"{target} {op}: no call succeeded: {phase_result['errors']}")
    return answer


async def _pair_client(
    ctx: Context, address: str, floor_address: str, http_port: int
) -> dict[str, dict[str, Any]]:
    """Per operation, back-to-back calls through the sidecar and the do-nothing server."""
    args = _base_args("pair", address) + ["--floor-address", floor_address]
    args += ["--phase", f"1:{_unloaded(ctx)}"]
    answer: dict[str, dict[str, Any]] = await _client(ctx, "pair", args, http_port)
    for op, pairs in answer.items():
        if not pairs["measured_ms"]:
            raise RuntimeError(f"pair {op}: no pair of calls succeeded ({pairs['errors']} failed)")
    return answer


def _unloaded(ctx: Context) -> int:
    return max(20, ctx.plan.sidecar_ops // 4)


@dataclass
class Figures:
    """One server's figures for one operation over all rounds: loaded and paced phases."""

    ops_s: float
    p50: float
    p99: float
    cpu_ms: float  #: server CPU per operation, loaded phase (closed loop, concurrency 16)
    paced_cpu_ms: float  #: server CPU per operation at PACED_RATE
    paced_cpu_rounds: list[float]  #: the same, per round
    errors: int
    samples: list[float]


def _cpu_per_op(phases: list[dict[str, Any]]) -> float:
    calls = sum(len(phase["latencies_ms"]) for phase in phases)
    return per_op(sum(phase["server_cpu_s"] for phase in phases) * 1000, calls)


def _figures(rounds: list[list[dict[str, Any]]]) -> Figures:
    """Pool the rounds: latencies together, CPU and time summed (phase 0 loaded, 1 paced)."""
    loaded = [phases[0] for phases in rounds]
    paced = [phases[1] for phases in rounds if len(phases) > 1]
    samples = [ms for phase in loaded for ms in phase["latencies_ms"]]
    lat = summarize(samples)
    return Figures(
        ops_s=rate(lat.count, sum(phase["elapsed_s"] for phase in loaded)),
        p50=lat.p50,
        p99=lat.p99,
        cpu_ms=_cpu_per_op(loaded),
        paced_cpu_ms=_cpu_per_op(paced) if paced else 0.0,
        paced_cpu_rounds=[_cpu_per_op([phase]) for phase in paced],
        errors=sum(sum(phase["errors"].values()) for phases in rounds for phase in phases),
        samples=samples,
    )


@dataclass
class Added:
    """What the sidecar adds to one call at concurrency 1, from back-to-back pairs."""

    sidecar_p50: float
    floor_p50: float
    added_p50: float  #: median of (sidecar - do-nothing) over the pairs
    direct_p50: float  #: a direct redis-py round trip, concurrency 1
    errors: int


def _added(pairs: list[dict[str, Any]], direct: list[dict[str, Any]]) -> Added:
    measured = [ms for pair in pairs for ms in pair["measured_ms"]]
    floor = [ms for pair in pairs for ms in pair["floor_ms"]]
    return Added(
        sidecar_p50=summarize(measured).p50,
        floor_p50=summarize(floor).p50,
        added_p50=summarize([a - b for a, b in zip(measured, floor, strict=True)]).p50,
        direct_p50=summarize(direct[1]["latencies_ms"]).p50,
        errors=sum(pair["errors"] for pair in pairs) + sum(direct[1]["errors"].values()),
    )


async def run(ctx: Context, result: ScenarioResult) -> None:
    """Fill `result` as figures come in, so a later failure keeps what was measured."""
    require_runnable("sidecar")
    stack = Stack(ctx.procs, ctx.root, ctx.subdir("s6"))
    sidecar = stack.sidecar("bench-client")
    noop_port, noop_http = free_port(), free_port()
    noop_address = f"127.0.0.1:{noop_port}"
    noop = ctx.procs.start(
        "noop-grpc",
        [PYTHON, "-m", "bench.floors", "grpc", "--port", str(noop_port)]
        + ["--http-port", str(noop_http)],
    )
    ctx.progress("scenario 6: waiting for the sidecar and the do-nothing gRPC server")
    wait_sidecar_outbound(sidecar)
    wait_for("noop-grpc", lambda: tcp_open(noop_port), timeout=30, procs=[noop])
    ops = ctx.plan.sidecar_ops
    server_phases = [f"{CONCURRENCY}:{ops}", f"{PACED_CONCURRENCY}:{ops}@{PACED_RATE:g}"]
    loads: dict[str, list[dict[str, list[dict[str, Any]]]]] = {"sidecar": [], "noop": []}
    pairs: list[dict[str, dict[str, Any]]] = []
    for round_no in range(1, ctx.plan.sidecar_rounds + 1):
        ctx.progress(f"scenario 6, round {round_no}: the three operations via the sidecar")
        loads["sidecar"].append(
            await _load_client(
                ctx, "sdk", sidecar.grpc_address, sidecar.proc.pid, sidecar.http_port, server_phases
            )
        )
        ctx.progress(f"scenario 6, round {round_no}: the same via the do-nothing gRPC server")
        loads["noop"].append(
            await _load_client(ctx, "sdk", noop_address, noop.pid, noop_http, server_phases)
        )
        ctx.progress(f"scenario 6, round {round_no}: sidecar and do-nothing calls in pairs")
        pairs.append(await _pair_client(ctx, sidecar.grpc_address, noop_address, sidecar.http_port))
    ctx.progress("scenario 6: the same directly with redis-py")
    direct_phases = [f"{CONCURRENCY}:{ops}", f"1:{_unloaded(ctx)}"]
    loads["redis"] = [
        await _load_client(ctx, "redis", stack.redis_url, stack.redis.pid, None, direct_phases)
    ]
    for op in OPS:
        side, floor, direct = (
            _figures([answer[op] for answer in loads[target]])
            for target in ("sidecar", "noop", "redis")
        )
        added = _added([pair[op] for pair in pairs], loads["redis"][0][op])
        ctx.progress(
            f"scenario 6: {op}: sidecar {side.ops_s:.0f} ops/s, do-nothing {floor.ops_s:.0f}, "
            f"redis-py {direct.ops_s:.0f}"
        )
        _report_op(result, op, side, floor, direct, added)
        result.samples[f"{op} via sidecar"] = side.samples
        result.samples[f"{op} do-nothing gRPC"] = floor.samples
        result.samples[f"{op} redis-py"] = direct.samples
    result.notes.append(
        "ops/s, p50, p99 and 'CPU per op, closed loop' are at concurrency 16 (closed loop, so p50 "
        "includes queueing in the one Python client); the CPU target uses the paced phase "
        f"({PACED_RATE:g} calls/s for both servers, {ctx.plan.sidecar_rounds} alternating "
        "round(s) pooled); 'added p50' is the median, over back-to-back pairs of calls at "
        "concurrency 1, of sidecar latency minus do-nothing latency: what the sidecar's own work "
        "(Redis round trip included) adds to a call"
    )


def _report_op(
    result: ScenarioResult, op: str, side: Figures, floor: Figures, direct: Figures, added: Added
) -> None:
    noop = "do-nothing gRPC server"
    result.row(f"{op}: ops/s", side.ops_s, "ops/s", noop, floor.ops_s)
    result.row(f"{op}: ops/s", side.ops_s, "ops/s", "direct redis-py", direct.ops_s)
    result.row(f"{op}: p50", side.p50, "ms", noop, floor.p50)
    result.row(f"{op}: p99", side.p99, "ms", noop, floor.p99)
    result.row(f"{op}: p50", side.p50, "ms", "direct redis-py", direct.p50)
    result.row(f"{op}: server CPU per op, closed loop", side.cpu_ms, "ms", noop, floor.cpu_ms)
    paced = f"{op}: server CPU per op at {PACED_RATE:g}/s"
    cpu = result.row(paced, side.paced_cpu_ms, "ms", noop, floor.paced_cpu_ms)
    if len(side.paced_cpu_rounds) > 1:
        ratios = ", ".join(
            f"{s / f:.2f}x" if f else "n/a"
            for s, f in zip(side.paced_cpu_rounds, floor.paced_cpu_rounds, strict=True)
        )
        result.notes.append(f"{op}: paced CPU ratio per round: {ratios}")
    if op == "get":
        result.row(paced, side.paced_cpu_ms, "ms", "daprd (published)", 0.06)
    result.row(f"{op}: p50 at concurrency 1", added.sidecar_p50, "ms", noop, added.floor_p50)
    name = f"{op}: added p50 (sidecar - do-nothing, c=1)"
    added_row = result.row(
        name, added.added_p50, "ms", "direct redis-py p50 (c=1)", added.direct_p50
    )
    result.row(name, added.added_p50, "ms", "daprd added p50 (published)", DAPRD_ADDED_P50_MS[op])
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
    if added_row.ratio is not None:
        result.targets.append(
            Target(
                f"{op}: added p50 <= {ADDED_LATENCY_LIMIT}x direct redis-py p50",
                added_row.ratio,
                ADDED_LATENCY_LIMIT,
                added_row.ratio <= ADDED_LATENCY_LIMIT,
            )
        )
    errors = side.errors + floor.errors + direct.errors + added.errors
    if errors:
        result.notes.append(f"{op}: {errors} calls failed (excluded from the figures)")
