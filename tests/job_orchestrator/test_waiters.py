"""Event-driven waits: woken by notifications, newest version wins, bounded by the timeout."""

from __future__ import annotations

import asyncio

from job_orchestrator.waiters import Waiters


def job(seq: int, status: str = "InProgress") -> dict[str, object]:
    return {"id": "j", "sequence": seq, "status": status}


async def test_final_wakes_the_waiter() -> None:
    waiters = Waiters()
    with waiters.watch("j") as watch:
        asyncio.get_running_loop().call_later(0.05, waiters.notify, job(3, "Completed"))
        assert await watch.final(5) == job(3, "Completed")
    assert len(waiters) == 0


async def test_stale_and_duplicate_versions_are_ignored() -> None:
    waiters = Waiters()
    with waiters.watch("j") as watch:
        waiters.notify(job(4, "Completed"))
        waiters.notify(job(2))
        assert watch.latest == job(4, "Completed")


async def test_timeout_returns_none_and_other_jobs_do_not_wake() -> None:
    waiters = Waiters()
    with waiters.watch("j") as watch:
        waiters.notify({"id": "other", "sequence": 9, "status": "Completed"})
        assert await watch.final(0.05) is None


async def test_a_final_version_wins_at_an_equal_sequence() -> None:
    waiters = Waiters()
    with waiters.watch("j") as watch:
        waiters.notify(job(2))
        waiters.notify(job(2, "Canceled"))
        waiters.notify(job(2))
        assert watch.latest == job(2, "Canceled")
