"""Handing a gone replica's unheard-of jobs over (handover.py), on a real sidecar and Redis.

Each replica here is a Handover of its own (its own JobStore and Unheard table) with a clock the
test moves, on a topic of the test's own, so no other replica's ledger is in its directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from job_orchestrator.handover import STALE_SAVES, Handover
from job_orchestrator.ledgers import Ledger, directory_key, ledger_key, members
from job_orchestrator.sidecar_client import connect
from job_orchestrator.store import JobStore
from job_orchestrator.unheard import Unheard
from tests.job_orchestrator.inprocess import InProcess

SAVE_EVERY = 5.0
STALE = STALE_SAVES * SAVE_EVERY
AFTER = 60.0
START = 1_000_000.0


@dataclasses.dataclass
class Replica:
    handover: Handover
    unheard: Unheard
    store: JobStore
    now: float = START

    def clock(self) -> float:
        return self.now

    async def ledger(self) -> Ledger | None:
        value, _ = await self.store.get_raw(ledger_key(self.handover.instance))
        return Ledger.from_value(value)

    async def listed(self, topic: str) -> list[str]:
        value, _ = await self.store.get_raw(directory_key(topic))
        return members(value)


MakeReplica = Callable[[], Awaitable[Replica]]


@pytest.fixture
def topic() -> str:
    return f"handover-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def make_replica(inproc: InProcess, topic: str) -> AsyncIterator[MakeReplica]:
    made: list[Replica] = []

    async def make() -> Replica:
        settings = dataclasses.replace(inproc.settings, replica_name=f"r-{uuid.uuid4().hex[:6]}")
        store = JobStore(await connect(settings), settings)
        unheard = Unheard(AFTER)
        replica = Replica(None, unheard, store)  # type: ignore[arg-type]
        replica.handover = Handover(
            store,
            unheard,
            settings.replica_name,
            topic,
            save_every=SAVE_EVERY,
            look_every=SAVE_EVERY,
            ttl_seconds=3600,
            clock=replica.clock,
        )
        made.append(replica)
        return replica

    yield make
    for replica in made:
        await replica.store.close()


def _ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def _tracked(unheard: Unheard) -> dict[str, float]:
    return dict(unheard.waiting(1000))


async def test_a_replica_saves_its_unheard_jobs_and_lists_itself(
    make_replica: MakeReplica, topic: str
) -> None:
    a = await make_replica()
    jobs = _ids(3)
    for n, job_id in enumerate(jobs):
        a.unheard.created(job_id, START - n)
    await a.handover.tick()
    ledger = await a.ledger()
    assert ledger is not None and not ledger.stopped and ledger.saved_at == START
    assert dict(ledger.jobs) == {job_id: START - n + AFTER for n, job_id in enumerate(jobs)}
    assert await a.listed(topic) == [a.handover.instance]


async def test_the_jobs_of_a_replica_whose_ledger_stopped_changing_are_taken_over(
    make_replica: MakeReplica, topic: str
) -> None:
    a, b = await make_replica(), await make_replica()
    jobs = _ids(2)
    for job_id in jobs:
        a.unheard.created(job_id, START)
    await a.handover.tick()
    await b.handover.tick()  # first sight of a's ledger
    b.now += STALE
    await b.handover.tick()
    assert b.handover.adopted == 0  # not unchanged for longer than STALE yet
    b.now += 1
    await b.handover.tick()
    assert b.handover.adopted == 2
    # Looked at when a would have: creation + AFTER.
    assert _tracked(b.unheard) == dict.fromkeys(jobs, START + AFTER)
    spent = await a.ledger()
    assert spent is not None and spent.adopted_by == b.handover.instance and spent.jobs == ()
    assert await b.listed(topic) == [b.handover.instance]
    b.now += 100
    await b.handover.tick()
    assert b.handover.adopted == 2  # once


async def test_a_replica_that_keeps_saving_keeps_its_jobs(
    make_replica: MakeReplica, topic: str
) -> None:
    a, b = await make_replica(), await make_replica()
    a.unheard.created(_ids(1)[0], START)
    for _ in range(4):
        await a.handover.tick()
        await b.handover.tick()
        a.now += SAVE_EVERY
        b.now += STALE  # b's clock runs far ahead: only a changed ledger counts
    assert b.handover.adopted == 0
    assert sorted(await b.listed(topic)) == sorted([a.handover.instance, b.handover.instance])


async def test_a_replica_that_stops_hands_its_jobs_over_at_once(
    make_replica: MakeReplica, topic: str
) -> None:
    a, b = await make_replica(), await make_replica()
    await a.handover.tick()
    job_id = _ids(1)[0]
    a.unheard.created(job_id, START)  # created after the last save: close() saves it
    await a.handover.close()
    ledger = await a.ledger()
    assert ledger is not None and ledger.stopped and dict(ledger.jobs) == {job_id: START + AFTER}
    await b.handover.tick()
    assert b.handover.adopted == 1
    assert _tracked(b.unheard) == {job_id: START + AFTER}
    assert await b.listed(topic) == [b.handover.instance]


async def test_of_two_replicas_that_find_a_ledger_orphaned_one_takes_it(
    make_replica: MakeReplica,
) -> None:
    a, b, c = await make_replica(), await make_replica(), await make_replica()
    jobs = _ids(5)
    for job_id in jobs:
        a.unheard.created(job_id, START)
    await a.handover.tick()
    await a.handover.close()
    await asyncio.gather(b.handover.tick(), c.handover.tick())
    assert sorted((b.handover.adopted, c.handover.adopted)) == [0, 5]
    taken: dict[str, Any] = _tracked(b.unheard) | _tracked(c.unheard)
    assert sorted(taken) == sorted(jobs)


async def test_a_replica_listed_no_more_lists_itself_again(
    make_replica: MakeReplica, topic: str
) -> None:
    """As after a replica was wrongly taken for gone, or the store lost the directory."""
    a = await make_replica()
    await a.handover.tick()
    _, etag = await a.store.get_raw(directory_key(topic))
    await a.store.save_raw(directory_key(topic), {"instances": []}, etag=etag)
    await a.handover.tick()
    assert await a.listed(topic) == [a.handover.instance]


async def test_a_ledger_is_saved_as_the_replica_starts_and_soon_after_a_job_is_added(
    make_replica: MakeReplica,
) -> None:
    """``run`` saves at once, then within a second of a job being added (while the table is
    small), not only every SAVE_EVERY: the test's clock stands still, so only an added job
    can make it save again. The jobs created between two saves are the ones a kill -9 leaves
    in no ledger."""
    a = await make_replica()
    running = asyncio.create_task(a.handover.run())

    async def ledger_lists(jobs: set[str]) -> bool:
        for _ in range(60):
            ledger = await a.ledger()
            if ledger is not None and {job_id for job_id, _ in ledger.jobs} == jobs:
                return True
            await asyncio.sleep(0.05)
        return False

    try:
        assert await ledger_lists(set())
        job_id = _ids(1)[0]
        a.unheard.created(job_id, START)
        assert await ledger_lists({job_id})
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
