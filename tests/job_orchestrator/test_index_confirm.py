"""The listing index names its parts again when the store lost the day's directory under them
(a Redis restarted empty, a failover that lost recent writes), through a real sidecar.

The loss is made by taking this process's names out of the directory, as the store coming back
without it would; the clock that paces the confirmations is the test's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid

from job_orchestrator.index import CONFIRM_AFTER_SECONDS, JobIndex
from job_orchestrator.index_keys import directory_key, minute_of
from job_orchestrator.jobs import Job
from job_orchestrator.store import JobStore
from tests.job_orchestrator.test_index_parts import stored_jobs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def lose_names(store: JobStore, index: JobIndex, job: Job) -> None:
    """The day's directory as the store has it after losing this process's names."""
    key = directory_key(minute_of(job.created_at)[0])
    directory, etag = await store.get_raw(key)
    assert directory is not None
    kept = [part for part in directory["parts"] if part[1] != index.instance]
    assert len(kept) < len(directory["parts"])
    await store.save_raw(key, {"parts": kept}, etag=etag)  # written first-write: etag needed


async def listed(index: JobIndex, owner: str) -> list[str]:
    page = await index.page(owner, None, 100, None, time.time())
    return [job["id"] for job in page.items]


def add(index: JobIndex, job: Job) -> None:
    """A job created by this process: numbered, so each flush saves the mark too."""
    index.add(dataclasses.replace(job, indexed_as=index.reserve()))


async def flush_counting(store: JobStore, index: JobIndex) -> int:
    """The sidecar calls one flush makes."""
    before = store.calls
    await index.flush()
    return store.calls - before


async def test_a_lost_part_name_is_restored_within_seconds_and_costs_no_call_per_flush(
    store: JobStore,
) -> None:
    owner = f"conf-{uuid.uuid4().hex[:8]}"
    made = await stored_jobs(store, owner, 4, time.time() // 60 * 60)  # one minute: one part
    clock = Clock()
    index = JobIndex(store, 86400, flush_seconds=1.0, monotonic=clock)
    add(index, made[0])
    await index.flush()  # named in the directory, then saved

    # Saving on: the part and the mark, nothing more, until the part's name is due a look.
    clock.now += 1
    add(index, made[1])
    assert await flush_counting(store, index) == 2
    clock.now += CONFIRM_AFTER_SECONDS
    assert await flush_counting(store, index) == 1  # the directory read: the name is there
    assert await flush_counting(store, index) == 0  # nothing saved since
    assert await listed(index, owner) == [j.id for j in reversed(made[:2])]

    # The store loses the directory; the part is saved on, unnamed, until the next look.
    await lose_names(store, index, made[0])
    clock.now += 1
    add(index, made[2])
    await index.flush()
    assert await listed(index, owner) == []
    clock.now += CONFIRM_AFTER_SECONDS
    await index.flush()
    assert await listed(index, owner) == [j.id for j in reversed(made[:3])]

    # A part saved with nothing due that a later flush finds lost is saved again whole.
    await lose_names(store, index, made[0])
    clock.now += 1
    add(index, made[3])
    await index.flush()
    clock.now += CONFIRM_AFTER_SECONDS
    await index.flush()
    assert await listed(index, owner) == [j.id for j in reversed(made)]


async def test_the_last_flush_before_stopping_confirms_every_part_saved(
    store: JobStore,
) -> None:
    """The app restarted right after the loss: its lifespan's last flush names the part."""
    owner = f"stop-{uuid.uuid4().hex[:8]}"
    made = await stored_jobs(store, owner, 2, time.time() // 60 * 60)
    clock = Clock()
    index = JobIndex(store, 86400, flush_seconds=3600, monotonic=clock)
    running = asyncio.create_task(index.run())
    add(index, made[0])
    await index.flush()
    await lose_names(store, index, made[0])
    add(index, made[1])
    await index.flush()  # saved just now: not due a look yet
    assert await listed(index, owner) == []

    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    await index.flush()
    assert await listed(index, owner) == [j.id for j in reversed(made)]
