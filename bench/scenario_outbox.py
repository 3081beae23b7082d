"""Scenario 7: what one outbox transaction costs the sidecar and Redis, by its event's path.

One sidecar has two ``state.redis`` stores with the same outbox (``pubsub.redis``, one topic):
``direct`` is in the pubsub's Redis database, so each upsert's script appends its event itself;
``relayed`` is in another database of the same Redis, so its events go daprd's way (internal
topic, marker row, relay). The same transactions (one upsert each, official SDK, a closed loop)
go to each store in alternating rounds. A round ends once all its events are in the topic's
stream and the processes are quiet; the figures are per transaction: sidecar CPU, Redis CPU,
Redis commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from .load import run_load
from .meters import CpuMeter, command_deltas, redis_commands, wait_quiet
from .plan import Context
from .results import ScenarioResult
from .stack import Stack, require_runnable, wait_sidecar_outbound
from .stats import per_op, rate, summarize

TOPIC = "bench-outbox"
PATHS = ("direct", "relayed")
CONCURRENCY = 8
VALUE = json.dumps({"status": "InProgress", "input": {"seconds": 0}, "pad": "x" * 200})


def _components(folder: Path, redis_host: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    outbox = {"outboxPublishPubsub": "pubsub", "outboxPublishTopic": TOPIC}
    docs = [
        ("direct", "state.redis", {"redisHost": redis_host, "redisDB": "0", **outbox}),
        ("relayed", "state.redis", {"redisHost": redis_host, "redisDB": "1", **outbox}),
        ("pubsub", "pubsub.redis", {"redisHost": redis_host, "redisDB": "0"}),
    ]
    for name, kind, metadata in docs:
        document = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": name},
            "spec": {
                "type": kind,
                "version": "v1",
                "metadata": [{"name": k, "value": v} for k, v in metadata.items()],
            },
        }
        (folder / f"{name}.yaml").write_text(json.dumps(document, indent=2))
    return folder


@dataclass
class Totals:
    transactions: int = 0
    seconds: float = 0.0
    sidecar_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    commands: int = 0


async def _events_in(broker: redis.Redis, count: int, timeout: float) -> bool:
    """Wait (bounded) until the topic's stream holds ``count`` events."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if broker.xlen(TOPIC) >= count:
            return True
        await asyncio.sleep(0.01)
    return False


async def run(ctx: Context, result: ScenarioResult) -> None:
    require_runnable("sidecar")
    from dapr.aio.clients import DaprClient
    from dapr.clients.grpc._request import TransactionalStateOperation
    from dapr.conf import settings

    stack = Stack(ctx.procs, ctx.root, ctx.subdir("s7"))
    folder = ctx.subdir("s7") / "outbox-components"
    resources = _components(folder, f"127.0.0.1:{stack.redis_port}")
    sidecar = stack.sidecar("bench-outbox", resources=resources)
    ctx.progress("scenario 7: waiting for the sidecar")
    wait_sidecar_outbound(sidecar)
    # Where the SDK checks health before a call (its settings are set dynamically at import).
    settings.DAPR_HTTP_PORT = sidecar.http_port  # type: ignore[attr-defined]
    meter = CpuMeter({"sidecar": sidecar.proc.pid, "redis": stack.redis.pid})
    broker = redis.Redis(host="127.0.0.1", port=stack.redis_port, socket_timeout=5)
    totals = {path: Totals() for path in PATHS}
    latencies: dict[str, list[float]] = {path: [] for path in PATHS}
    events = broker.xlen(TOPIC)
    try:
        async with DaprClient(address=sidecar.grpc_address) as client:

            def transaction(store: str) -> Callable[[int], Awaitable[None]]:
                async def call(i: int) -> None:
                    operation = TransactionalStateOperation(
                        key=f"job-{i % 64}",
                        data=VALUE,
                        metadata={"contentType": "application/json", "type": "job.updated"},
                    )
                    await client.execute_state_transaction(store, [operation])

                return call

            for path in PATHS:  # warm both paths (connections, scripts, the relay's consumer)
                await run_load(transaction(path), count=20, concurrency=1, time_limit=30)
            events += 2 * 20
            if not await _events_in(broker, events, ctx.plan.settle_s):
                raise RuntimeError("the warm-up transactions' events never reached the topic")
            for round_no in range(1, ctx.plan.sidecar_rounds + 1):
                for path in PATHS if round_no % 2 else PATHS[::-1]:
                    ctx.progress(f"scenario 7, round {round_no}: {path}")
                    wait_quiet([sidecar.proc.pid, stack.redis.pid], timeout=ctx.plan.settle_s)
                    commands = redis_commands(stack.redis_port)
                    meter.start()
                    load = await run_load(
                        transaction(path),
                        count=ctx.plan.sidecar_ops,
                        concurrency=CONCURRENCY,
                        time_limit=ctx.plan.load_time_limit,
                    )
                    events += load.ok
                    if not await _events_in(broker, events, ctx.plan.settle_s):
                        raise RuntimeError(f"{path}: not every transaction's event was published")
                    wait_quiet([sidecar.proc.pid, stack.redis.pid], timeout=ctx.plan.settle_s)
                    cpu = meter.stop()
                    after = redis_commands(stack.redis_port)
                    if load.errors:
                        result.notes.append(f"{path}, round {round_no}: failed calls {load.errors}")
                    total = totals[path]
                    total.transactions += load.ok
                    total.seconds += load.elapsed_s
                    total.sidecar_cpu_s += cpu["sidecar"]
                    total.redis_cpu_s += cpu["redis"]
                    deltas = command_deltas(commands, after)
                    deltas.pop("xlen", None)  # this scenario's own look at the stream
                    total.commands += sum(deltas.values())
                    latencies[path] += load.latencies_ms
    finally:
        broker.close()
    _report(result, totals, latencies)


def _figures(total: Totals, samples: list[float]) -> dict[str, tuple[float, str]]:
    if not total.transactions:
        raise RuntimeError("no transaction succeeded")
    n = total.transactions
    return {
        "transactions/s": (rate(n, total.seconds), "tx/s"),
        "p50": (summarize(samples).p50, "ms"),
        "sidecar CPU per transaction": (per_op(total.sidecar_cpu_s * 1000, n), "ms"),
        "Redis CPU per transaction": (per_op(total.redis_cpu_s * 1000, n), "ms"),
        "Redis commands per transaction": (per_op(total.commands, n), "commands"),
    }


def _report(
    result: ScenarioResult, totals: dict[str, Totals], latencies: dict[str, list[float]]
) -> None:
    """The direct path's figures, each against the relayed path's."""
    relayed = _figures(totals["relayed"], latencies["relayed"])
    direct = _figures(totals["direct"], latencies["direct"])
    for name, (value, unit) in direct.items():
        result.row(f"direct: {name}", value, unit, "relayed", relayed[name][0])
    result.notes.append(
        "one upsert per transaction, 8 at a time. direct: the store's script appends the event "
        "(store and pubsub in one Redis database); relayed: daprd's internal topic, marker, relay"
    )
