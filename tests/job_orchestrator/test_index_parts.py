"""The listing index's parts through a real sidecar: a busy minute seals full segments instead
of rewriting them, a part this process forgot is continued, and the listing reads it all."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
import uuid
from pathlib import Path

import pytest

from job_orchestrator import jobs
from job_orchestrator.errors import StoreUnavailable
from job_orchestrator.index import JobIndex
from job_orchestrator.index_keys import mark_key, minute_of, part_key, segment_key
from job_orchestrator.jobs import Job, iso, parse_iso
from job_orchestrator.sidecar_client import connect
from job_orchestrator.store import JobStore, job_key
from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess
from tests.job_orchestrator.stack import Replica, log_dir_for, sidecar_state, write_components

SEGMENT = 3


def make_index(store: JobStore) -> JobIndex:
    return JobIndex(store, 86400, flush_seconds=1.0, segment_entries=SEGMENT)


async def stored_jobs(store: JobStore, owner: str, count: int, minute_start: float) -> list[Job]:
    made = []
    for i in range(count):
        job = jobs.new_job(
            uuid.uuid4().hex,
            "wait",
            {},
            owner=owner,
            max_attempts=1,
            run_timeout_seconds=None,
            now=minute_start + 1 + i / 1000,
        )
        await store.save_raw(job_key(job.id), job.to_record())
        made.append(job)
    return made


async def test_a_busy_part_seals_segments_and_lists_every_entry(store: JobStore) -> None:
    owner = f"parts-{uuid.uuid4().hex[:8]}"
    minute_start = time.time() // 60 * 60  # all in one minute, so in one part
    made = await stored_jobs(store, owner, 9, minute_start)
    index = make_index(store)
    for first in range(0, 8, 2):  # four flushes of two entries
        for job in made[first : first + 2]:
            index.add(job)
        await index.flush()

    day, minute = minute_of(minute_start + 1)
    part = part_key(day, minute, index.instance)
    head, _ = await store.get_raw(part)
    sealed, _ = await store.get_raw(segment_key(part, 0))
    assert head is not None and sealed is not None
    # 2, 4 (rewritten), then 4 >= 3: sealed as segment 0; the part starts again with 2, 4.
    assert [e[1] for e in sealed["jobs"]] == [j.id for j in made[:4]]
    assert (head["sealed"], [e[1] for e in head["jobs"]]) == (1, [j.id for j in made[4:8]])

    # A process that forgot the part (another minute indexed late) continues it.
    again = make_index(store)
    again.instance = index.instance
    again.add(made[8])
    await again.flush()
    head, _ = await store.get_raw(part)
    assert head is not None and head["sealed"] == 2
    assert [e[1] for e in head["jobs"]] == [made[8].id]

    page = await index.page(owner, None, 100, None, time.time())
    assert [j["id"] for j in page.items] == [j.id for j in reversed(made)]
    halves = await index.page(owner, None, 5, None, time.time())
    rest = await index.page(owner, None, 5, halves.next_cursor, time.time())
    assert [j["id"] for j in halves.items + rest.items] == [j.id for j in reversed(made)]


async def test_sealed_segments_record_their_bounds_and_older_parts_still_list(
    store: JobStore,
) -> None:
    owner = f"bounds-{uuid.uuid4().hex[:8]}"
    minute_start = time.time() // 60 * 60
    made = await stored_jobs(store, owner, 5, minute_start)
    index = make_index(store)
    for job in made[:3]:
        index.add(job)
    await index.flush()
    for job in made[3:]:
        index.add(job)
    await index.flush()  # 3 >= 3: the first three sealed, with their oldest and newest
    day, minute = minute_of(minute_start + 1)
    part = part_key(day, minute, index.instance)
    head, _ = await store.get_raw(part)
    assert head is not None
    stamps = [parse_iso(iso(j.created_at)) for j in made[:3]]
    assert (head["sealed"], head["bounds"]) == (1, [[min(stamps), max(stamps)]])

    # A part saved before bounds were recorded: its segment is read all the same.
    del head["bounds"]
    await store.save_raw(part, head)
    page = await index.page(owner, None, 100, None, time.time())
    assert [j["id"] for j in page.items] == [j.id for j in reversed(made)]


async def test_a_page_stops_at_its_budget_and_hands_on_a_cursor(store: JobStore) -> None:
    owner = f"budget-{uuid.uuid4().hex[:8]}"
    # A minute of its own, hours back: the other tests' entries are all newer.
    minute_start = (time.time() // 60 - 120 - random.randrange(600)) * 60
    made = await stored_jobs(store, owner, 9, minute_start)
    wanted = made[0]  # the oldest: the only Completed one
    await store.save_raw(
        job_key(wanted.id),
        dataclasses.replace(wanted, status=jobs.JobStatus.COMPLETED).to_record(),
    )
    writer = make_index(store)
    for job in made:
        writer.add(job)
    await writer.flush()

    async def pages(index: JobIndex) -> list[list[str]]:
        found, cursor = [], None
        for _ in range(20):
            page = await index.page(owner, "Completed", 10, cursor, minute_start + 59)
            found.append([j["id"] for j in page.items])
            cursor = page.next_cursor
            if cursor is None:
                return found
        raise AssertionError("the cursor never ran out")

    # Four entries per page: two empty pages with cursors, then the job, then nothing more.
    few_entries = JobIndex(store, 86400, flush_seconds=1.0, max_entries=4)
    assert await pages(few_entries) == [[], [], [wanted.id]]
    # Three job reads per page: the same, in three pages of three.
    few_reads = JobIndex(store, 86400, flush_seconds=1.0, max_job_reads=3)
    assert await pages(few_reads) == [[], [], [wanted.id], []]
    # Without limits, one page.
    assert await pages(make_index(store)) == [[wanted.id]]


@pytest.mark.timeout(120)
async def test_a_flush_that_fails_keeps_its_jobs_and_holds_the_mark_back(
    inproc: InProcess, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The sidecar is killed (-9) under a flush: the entries and the numbers they carry wait
    for a later flush, and until then the mark does not pass them."""
    replica = Replica("flush")
    resources = write_components(tmp_path / "resources", redis_server.host, inproc.topic)
    sidecar = replica.start_sidecar(resources, log_dir_for(tmp_path))
    settings = dataclasses.replace(
        inproc.settings,
        dapr_http_port=replica.http_port,
        dapr_grpc_port=replica.grpc_port,
        replica_name="flush",
    )
    store = JobStore(await connect(settings), settings)
    try:
        index = make_index(store)
        indexed_as = index.reserve()
        number = int(indexed_as.rpartition(":")[2])
        job = dataclasses.replace(
            (await stored_jobs(store, "flusher", 1, time.time() // 60 * 60))[0],
            indexed_as=indexed_as,
        )
        index.add(job)
        sidecar.kill9()
        await index.flush()  # fails: logged, kept for the next one

        replica.start_sidecar(resources, log_dir_for(tmp_path))
        part = part_key(*minute_of(job.created_at), index.instance)
        for _ in range(100):  # the client's channel reconnects after its backoff
            await index.flush()
            with contextlib.suppress(StoreUnavailable):
                saved, _ = await store.get_raw(part)
                if saved and job.id in [entry[1] for entry in saved["jobs"]]:
                    break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the job was never indexed after the sidecar came back")
        assert await saved_mark(inproc, index.instance) == number
    finally:
        await store.close()
        replica.stop()


async def saved_mark(inproc: InProcess, instance: str) -> int:
    """The index mark of ``instance``, read through the package's own sidecar."""
    saved = await asyncio.to_thread(sidecar_state, inproc.replica.http_port, mark_key(instance))
    return int(saved["number"]) if saved else 0
