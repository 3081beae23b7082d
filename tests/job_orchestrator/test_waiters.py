"""Event-driven waits: woken by notifications, newest version wins, bounded by the timeout."""

from __future__ import annotations

import asyncio

from job_orchestrator.waiters import LISTEN_AFTER_SECONDS, Waiters


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


async def test_release_ends_every_wait_now_and_later() -> None:
    waiters = Waiters()
    with waiters.watch("j") as watch:
        watch.offer(job(2))
        asyncio.get_running_loop().call_later(0.05, waiters.release)
        # Without the release this waits 60 s: wait_for fails the test after 5.
        assert await asyncio.wait_for(watch.final(60), 5) is None
        assert watch.latest == job(2)
    with waiters.watch("j") as later:
        assert later.released
        assert await asyncio.wait_for(later.final(60), 5) is None
        assert await asyncio.wait_for(later.changed(60), 5) is False
        waiters.notify(job(3, "Completed"))  # a change that already arrived is still seen
        assert await later.final(60) == job(3, "Completed")


async def test_a_refresh_is_due_once_per_interval_for_all_of_a_jobs_watchers() -> None:
    waiters = Waiters()
    with waiters.watch("j"), waiters.watch("j"), waiters.watch("other"):
        assert waiters.refresh_due("j", 0.2)
        assert not waiters.refresh_due("j", 0.2)  # the other watcher of j: already read
        assert waiters.refresh_due("other", 0.2)  # each job has its own
        await asyncio.sleep(0.25)
        assert waiters.refresh_due("j", 0.2)
    with waiters.watch("j"):
        assert waiters.refresh_due("j", 60)  # forgotten with the job's last watcher


async def test_a_client_gone_ends_its_wait_and_only_its_own() -> None:
    waiters = Waiters()
    left = asyncio.Event()
    with waiters.watch("j") as watch, waiters.watch("j") as other:
        watch.offer(job(2))
        other.offer(job(2))
        asyncio.get_running_loop().call_later(0.05, left.set)
        # Without the disconnect this waits 60 s: wait_for fails the test after 5.
        assert await asyncio.wait_for(watch.final(60, left.wait), 5) is None
        assert watch.released and not other.released and not waiters.released
        assert await other.final(0.05) is None  # still waiting, until its own timeout


async def test_the_disconnect_listener_ends_with_the_wait() -> None:
    waiters = Waiters()
    listened: list[asyncio.Task[object] | None] = []

    async def gone() -> None:
        listened.append(asyncio.current_task())
        await asyncio.sleep(60)

    with waiters.watch("j") as watch:
        watch.offer(job(2))
        later = LISTEN_AFTER_SECONDS + 0.05
        asyncio.get_running_loop().call_later(later, waiters.notify, job(3, "Completed"))
        assert await watch.final(5, gone) == job(3, "Completed")
    await asyncio.sleep(0)
    (listener,) = listened
    assert listener is not None and listener.cancelled()


async def test_a_wait_shorter_than_the_listening_delay_never_listens() -> None:
    """Listening costs a task in the server's receive: most waits end before it starts."""
    waiters = Waiters()
    listened: list[object] = []

    async def gone() -> None:
        listened.append(asyncio.current_task())

    with waiters.watch("j") as watch:
        watch.offer(job(2))
        asyncio.get_running_loop().call_later(0.05, waiters.notify, job(3, "Completed"))
        assert await watch.final(5, gone) == job(3, "Completed")
        assert await watch.final(0.1, gone) == job(3, "Completed")
    await asyncio.sleep(LISTEN_AFTER_SECONDS + 0.1)
    assert listened == []
