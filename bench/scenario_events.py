"""Scenario 5: time from the orchestrator's publish of a job change to microservice-x's handler.

Jobs owned by microservice-x run one at a time (light load); for each, the job's own change
time (createdAt, completedAt: set just before the transaction that saves and publishes it) is
compared with the receivedAt microservice-x records when its handler gets the event.
"""

from __future__ import annotations

from . import client
from .job_times import delivery_ms
from .load import run_load
from .plan import Context
from .results import ScenarioResult
from .stack import Stack, require_runnable, wait_services
from .stats import summarize


async def run(ctx: Context, result: ScenarioResult) -> None:
    """Fill `result` as figures come in, so a later failure keeps what was measured."""
    for module in ("sidecar", "job_orchestrator", "microservice_x"):
        require_runnable(module)
    stack = Stack(ctx.procs, ctx.root, ctx.subdir("s5"))
    orchestrator = stack.orchestrator()
    msx = stack.microservice_x()
    ctx.progress("scenario 5: starting the orchestrator and microservice-x")
    wait_services([orchestrator, msx])
    ids: list[str] = []
    async with client.session(4) as http:

        async def one_job(_: int) -> None:
            answer = await client.call(
                http,
                "POST",
                f"{orchestrator.url}/jobs",
                json_body=client.SHORT_JOB,
                headers={"Prefer": "wait=10"},
                expect=(200,),
            )
            ids.append(answer.body["id"])

        load = await run_load(
            one_job, count=ctx.plan.event_count, concurrency=1, time_limit=ctx.plan.load_time_limit
        )
        views = await client.collect_views(http, msx.url, ids, timeout=ctx.plan.settle_s)
    if load.errors:
        result.notes.append(f"failed requests: {load.errors}")
    created: list[float] = []
    final: list[float] = []
    for view in views.values():
        delays = delivery_ms(view)
        if "job.created" in delays:
            created.append(delays["job.created"])
        if "final" in delays:
            final.append(delays["final"])
    if len(views) < len(ids):
        result.notes.append(f"{len(ids) - len(views)} jobs' final events never arrived")
    if not final:
        raise RuntimeError("no final event reached microservice-x")
    for name, samples in (("job.created", created), ("job.completed", final)):
        if samples:
            part = summarize(samples)
            result.row(f"{name}: publish -> handler, p50", part.p50, "ms")
            result.row(f"{name}: publish -> handler, p99", part.p99, "ms")
            result.samples[name] = samples
    result.notes.append(
        "change times have millisecond resolution; the figure includes the outbox transaction"
    )
    ctx.progress(f"scenario 5: final event p50 {summarize(final).p50:.1f} ms")
