"""Job writes batched into one transaction through a real sidecar: what stands, what conflicts.

state.redis applies all but a failing operation, the atomic stores none (test_other_stores.py
runs the same checks there); either way every write ends as it would have alone, and on
state.redis each stored change is announced once and a lost one never.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from typing import Any

import redis

from dapr_support.jsonbytes import dumps
from job_orchestrator import jobs
from job_orchestrator.jobs import Job, JobStatus
from job_orchestrator.sidecar_client import connect
from job_orchestrator.store import Conflict, JobStore, Write, distinct_rounds, stood
from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess
from tests.procs import wait_until


async def open_store(inproc: InProcess) -> JobStore:
    """A second client of the app's sidecar, writing as a replica of its own."""
    settings = dataclasses.replace(inproc.settings, replica_name=f"batch-{uuid.uuid4().hex[:6]}")
    store = JobStore(await connect(settings), settings)
    await store.inspect()
    return store


def running_job(worker: str) -> Job:
    """A job already InProgress, so the app under test has no queue message to act on."""
    now = time.time()
    job = jobs.new_job(
        uuid.uuid4().hex, "wait", {}, owner=None, max_attempts=1, run_timeout_seconds=None, now=now
    )
    return jobs.claim(job, worker, now, lease_seconds=60)


async def write_together(store: JobStore, writes: list[tuple[Job, str]]) -> list[Any]:
    """Start all writes in one tick, so they queue for one batch; their outcomes in order."""
    return await asyncio.wait_for(
        asyncio.gather(*(store.write(job, etag) for job, etag in writes), return_exceptions=True),
        30,
    )


async def conflicting_batch(store: JobStore) -> tuple[list[Job], list[Any]]:
    """Four jobs created in one call, then completed in one batch where one etag is stale."""
    created = [running_job("batch-test") for _ in range(4)]
    calls = store.calls
    made = await write_together(store, [(job, "") for job in created])
    assert not any(isinstance(outcome, BaseException) for outcome in made), made
    assert store.calls - calls == 1  # four jobs, one transaction
    etags = [(await store.get(job.id))[1] for job in created]
    stale = "999" if store.counted_etags else str(uuid.uuid4())
    done = [jobs.transition(job, JobStatus.COMPLETED, time.time()) for job in created]
    outcomes = await write_together(
        store, [(job, stale if i == 1 else etags[i]) for i, job in enumerate(done)]
    )
    return done, outcomes


async def check_outcomes(store: JobStore, done: list[Job], outcomes: list[Any]) -> None:
    assert isinstance(outcomes[1], Conflict), outcomes
    assert not any(isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 1)
    for i, job in enumerate(done):
        stored, _ = await store.get(job.id)
        assert stored is not None
        assert stored.status == (JobStatus.IN_PROGRESS if i == 1 else JobStatus.COMPLETED)


async def test_a_batch_with_a_stale_etag_stores_and_announces_exactly_the_others(
    inproc: InProcess, redis_server: RedisServer
) -> None:
    store = await open_store(inproc)
    try:
        done, outcomes = await conflicting_batch(store)
        await check_outcomes(store, done, outcomes)
    finally:
        await store.close()

    stream = redis.Redis(host="127.0.0.1", port=redis_server.port)

    def announced() -> dict[str, list[str]]:
        types: dict[str, list[str]] = {job.id: [] for job in done}
        for _, fields in stream.xrange(inproc.topic):
            event = json.loads(fields[b"data"])
            if event.get("subject") in types:
                types[event["subject"]].append(event["type"])
        return types

    expected = {job.id: ["job.updated", "job.completed"] for job in done}
    expected[done[1].id] = ["job.updated"]  # the lost write published nothing
    wait_until(lambda: announced() == expected, timeout=15)
    time.sleep(0.5)  # a stray or duplicate event would come within the relay's first looks
    assert announced() == expected


async def test_two_changes_of_one_job_in_one_batch_end_with_one_winner(
    inproc: InProcess, redis_server: RedisServer
) -> None:
    """And its event is the winner's: the outbox matches records to events by key, so the two
    changes never share a transaction (together, the standing completion went out carrying
    the losing cancel's job)."""
    store = await open_store(inproc)
    try:
        job = running_job("batch-test")
        await store.write(job, "")
        _, etag = await store.get(job.id)
        now = time.time()
        completed = jobs.transition(job, JobStatus.COMPLETED, now)
        canceled = jobs.transition(job, JobStatus.CANCELED, now)
        calls = store.calls
        outcomes = await write_together(store, [(completed, etag), (canceled, etag)])
        assert [isinstance(o, Conflict) for o in outcomes] == [False, True], outcomes
        assert store.calls - calls >= 2  # one transaction each
        stored, _ = await store.get(job.id)
        assert stored is not None and stored.status == JobStatus.COMPLETED
    finally:
        await store.close()
    stream = redis.Redis(host="127.0.0.1", port=redis_server.port)

    def announced() -> list[tuple[str, str]]:
        found = [json.loads(fields[b"data"]) for _, fields in stream.xrange(inproc.topic)]
        return [(e["type"], e["data"]["status"]) for e in found if e.get("subject") == job.id]

    wait_until(lambda: len(announced()) == 2, timeout=15)
    time.sleep(0.5)  # a stray event would come within the relay's first looks
    assert announced() == [("job.updated", "InProgress"), ("job.completed", "Completed")]


def test_the_changes_of_one_job_go_in_rounds_of_distinct_keys() -> None:
    assert distinct_rounds(["a", "b", "c"]) == [[0, 1, 2]]
    assert distinct_rounds(["a", "b", "a", "a", "c", "b"]) == [[0, 1, 4], [2, 5], [3]]
    assert distinct_rounds([]) == []


async def test_jobs_with_large_results_go_in_messages_a_sidecar_takes(inproc: InProcess) -> None:
    """24 jobs of 250 KB: 6 MB in all, more than a sidecar takes or sends in one message
    (4 MiB). Writes go a few per transaction; a bulk read past the limit is made in halves."""
    store = await open_store(inproc)
    try:
        now = time.time()
        big = [
            jobs.transition(running_job("big"), JobStatus.COMPLETED, now, result="r" * 250_000)
            for _ in range(24)
        ]
        calls = store.calls
        outcomes = await write_together(store, [(job, "") for job in big])
        assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
        # Two per transaction after the first (alone): no call failed as too large.
        assert store.calls - calls <= 13
        keys = [f"job-{job.id}" for job in big]
        assert {
            key: len(value["result"]) for key, value in (await store.bulk_get(keys)).items()
        } == (dict.fromkeys(keys, 250_000))
        read = await asyncio.wait_for(asyncio.gather(*(store.get(job.id) for job in big)), 30)
        assert [(job.id, job.result) for job, _ in read if job is not None] == [
            (job.id, job.result) for job in big
        ]
        assert store.failed_calls == 0
    finally:
        await store.close()


def test_a_creation_stands_when_its_key_holds_any_record_after_a_failed_batch() -> None:
    """Its id is new, so any record there is the job it created, maybe claimed or finished by
    another replica since: sending the creation again would put the job back to New and run
    it a second time."""
    created = dumps({"id": "j", "status": "New"})
    claimed = {"id": "j", "status": "InProgress"}
    assert stood(Write("job-j", "", created, []), {"job-j": claimed})
    assert not stood(Write("job-j", "", created, []), {})
    update = dumps({"id": "j", "status": "Completed"})
    assert not stood(Write("job-j", "3", update, []), {"job-j": claimed})
    assert stood(Write("job-j", "3", update, []), {"job-j": {"id": "j", "status": "Completed"}})
