"""A stopping worker (through a real sidecar): it claims nothing new, lets running jobs finish
within the grace, then hands back what still runs and answers those deliveries RETRY.

The test's worker is handed its jobs directly, with no queue message behind them, so the app
beside it (on the same sidecar) can only ever run one through the event of its hand-back."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from job_orchestrator import jobs
from job_orchestrator.handlers import default_registry
from job_orchestrator.jobs import Job, JobStatus
from job_orchestrator.runs import Answer
from job_orchestrator.sidecar_client import connect
from job_orchestrator.store import JobStore, job_key
from job_orchestrator.waiters import Waiters
from job_orchestrator.worker import Worker
from tests.job_orchestrator.inprocess import InProcess

GRACE = 1.0
#: Outlasts GRACE, so the job is handed back; short enough for the app to finish it soon after.
LONG_SECONDS = 3.0


@pytest.fixture
async def worker(inproc: InProcess) -> AsyncIterator[tuple[Worker, JobStore]]:
    """A worker of its own beside the app's, on the app's sidecar."""
    settings = dataclasses.replace(inproc.settings, replica_name=f"stop-{uuid.uuid4().hex[:6]}")
    store = JobStore(await connect(settings), settings)
    await store.inspect()
    worker = Worker(store, default_registry(), Waiters(), settings)
    try:
        yield worker, store
    finally:
        await worker.close()
        await store.close()


async def queued(store: JobStore, seconds: float) -> Job:
    """A New `wait` job stored without its event, so only the test's worker ever runs it."""
    job = jobs.new_job(
        uuid.uuid4().hex,
        "wait",
        {"seconds": seconds},
        owner=None,
        max_attempts=1,
        run_timeout_seconds=None,
        now=time.time(),
    )
    await store.save_raw(job_key(job.id), job.to_record())
    return job


async def stored(store: JobStore, job_id: str) -> Job:
    job, _ = await store.get(job_id)
    assert job is not None
    return job


async def until_running(store: JobStore, job_id: str) -> None:
    for _ in range(100):
        if (await stored(store, job_id)).status is JobStatus.IN_PROGRESS:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"job {job_id} never started")


async def test_a_stopping_worker_claims_nothing_new(worker: tuple[Worker, JobStore]) -> None:
    runner, store = worker
    runner.begin_shutdown(GRACE)
    job = await queued(store, 0.1)

    assert await asyncio.wait_for(runner.deliver(job.id), 5) is Answer.RETRY
    assert (await stored(store, job.id)).status is JobStatus.NEW  # left for another replica


def taken_over(inproc: InProcess, job_id: str) -> dict[str, Any]:
    """The job once final, after the app took it over from the stopping worker."""
    job: dict[str, Any] = inproc.client.get(f"/jobs/{job_id}", params={"wait": 15}).json()
    assert (job["status"], job["worker"]) == ("Completed", inproc.settings.replica_name), job
    assert (job["attempt"], job["handedBack"]) == (2, False), job
    return job


async def test_jobs_finish_within_the_grace_and_the_rest_are_handed_back(
    worker: tuple[Worker, JobStore], inproc: InProcess
) -> None:
    runner, store = worker
    short, long = await queued(store, 0.3), await queued(store, LONG_SECONDS)
    deliveries = [asyncio.create_task(runner.deliver(job.id)) for job in (short, long)]
    await until_running(store, short.id)
    await until_running(store, long.id)

    began = time.monotonic()
    runner.begin_shutdown(GRACE)
    answers = await asyncio.wait_for(asyncio.gather(*deliveries), 10)
    took = time.monotonic() - began

    # The short job finished; the long one was handed back once the grace ran out, and its
    # delivery answered RETRY so the broker redelivers it should the hand-back's event not
    # reach another worker. Here it reached the app's, which took the job over at once.
    assert answers == [Answer.SUCCESS, Answer.RETRY]
    assert (await stored(store, short.id)).status is JobStatus.COMPLETED
    assert took >= GRACE  # not before the grace ended
    assert runner.running == 0
    await asyncio.wait_for(runner.close(), 5)  # closing again is harmless
    await asyncio.to_thread(taken_over, inproc, long.id)
    assert (await stored(store, long.id)).takeovers == 0  # a hand-back is no lost worker


async def running_long_job(
    runner: Worker, store: JobStore, seconds: float = 60
) -> tuple[asyncio.Task[Answer], Job, str]:
    """A job the worker runs (its delivery still open), as stored, with its etag."""
    job = await queued(store, seconds)
    delivery = asyncio.create_task(runner.deliver(job.id))
    await until_running(store, job.id)
    running, etag = await store.get(job.id)
    assert running is not None
    return delivery, running, etag


async def test_a_job_is_handed_back_though_the_etag_the_worker_holds_is_stale(
    worker: tuple[Worker, JobStore], inproc: InProcess
) -> None:
    """As when the cancellation cuts off a progress write that still landed: the worker never
    heard the new etag, yet the job is still its own, so the hand-back re-reads and lands."""
    runner, store = worker
    delivery, running, etag = await running_long_job(runner, store, LONG_SECONDS)
    await store.save_raw(job_key(running.id), running.to_record(), etag=etag)  # a new etag

    runner.begin_shutdown(0)
    assert await asyncio.wait_for(delivery, 10) is Answer.RETRY
    await asyncio.to_thread(taken_over, inproc, running.id)


async def test_a_job_no_longer_ours_is_not_handed_back(worker: tuple[Worker, JobStore]) -> None:
    runner, store = worker
    delivery, running, etag = await running_long_job(runner, store)
    taken = dataclasses.replace(running, worker="another-replica")
    await store.save_raw(job_key(running.id), taken.to_record(), etag=etag)

    runner.begin_shutdown(0)
    await asyncio.wait_for(delivery, 10)
    back = await stored(store, running.id)
    assert (back.worker, back.handed_back) == ("another-replica", False)


async def test_a_cancel_that_comes_as_a_sidecar_call_answers_is_not_lost(
    worker: tuple[Worker, JobStore],
) -> None:
    """How a stopping replica once ran a job to its end instead of handing it back: the answer
    of its lease renewal and the shutdown's cancellation came in the same turn of the loop,
    and the call's deadline (``asyncio.wait_for`` on Python 3.11) returned the answer and
    dropped the cancellation. The store's calls must raise it."""
    _, store = worker
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def call() -> str:
        return await answer

    calling = asyncio.create_task(store._call("renewing a lease", call))
    for _ in range(3):
        await asyncio.sleep(0)  # the call is in flight
    assert not calling.done()
    answer.set_result("answered")
    calling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await calling
