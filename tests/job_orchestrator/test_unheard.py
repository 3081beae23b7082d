"""The table of jobs created here and not yet heard of (unheard.py): when each is looked at."""

from __future__ import annotations

from job_orchestrator.unheard import MAX_INTERVAL_SECONDS, Unheard


def test_a_job_is_due_after_the_pause_and_not_before() -> None:
    table = Unheard(after=60)
    table.created("a", now=1000)
    table.created("b", now=1010)
    assert list(table.due(1059)) == []
    assert list(table.due(1060)) == [("a", 60)]
    assert list(table.due(1060)) == []  # handed out once
    assert list(table.due(1070)) == [("b", 60)]
    assert len(table) == 0


def test_a_job_heard_of_is_never_due() -> None:
    table = Unheard(after=60)
    table.created("a", now=0)
    table.created("b", now=0)
    table.heard("a")
    table.heard("unknown")  # a delivery of a job created elsewhere
    assert list(table.due(100)) == [("b", 60)]


def test_looks_again_after_doubling_pauses_up_to_the_cap() -> None:
    table = Unheard(after=60)
    table.created("a", now=0)
    now, pause = 60.0, 60.0
    seen = []
    for _ in range(10):
        ((job_id, pause),) = list(table.due(now))
        seen.append(pause)
        table.again(job_id, pause, now)
        assert list(table.due(now + min(pause * 2, MAX_INTERVAL_SECONDS) - 1)) == []
        now += min(pause * 2, MAX_INTERVAL_SECONDS)
    assert seen == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]


def test_a_job_heard_of_between_looks_is_not_looked_at_again() -> None:
    table = Unheard(after=10)
    table.created("a", now=0)
    ((job_id, pause),) = list(table.due(10))
    table.again(job_id, pause, 10)
    table.heard("a")
    assert len(table) == 0
    assert list(table.due(1000)) == []


def test_a_full_table_drops_its_oldest_job() -> None:
    table = Unheard(after=10, capacity=2)
    for n, job_id in enumerate("abc"):
        table.created(job_id, now=n)
    assert table.dropped == 1
    assert [job_id for job_id, _ in table.due(100)] == ["b", "c"]
    table.again("b", 10, 100)
    table.again("c", 10, 100)
    table.again("d", 10, 100)  # full: not tracked
    assert table.dropped == 2
    assert [job_id for job_id, _ in table.due(1000)] == ["b", "c"]


def test_an_adopted_job_is_looked_at_when_its_creator_would_have_then_as_usual() -> None:
    table = Unheard(after=60)
    assert table.adopt("a", look_at=500)
    assert list(table.due(499)) == []
    ((job_id, pause),) = list(table.due(500))
    assert (job_id, pause) == ("a", 60)
    table.again(job_id, pause, 500)
    assert list(table.due(619)) == []
    assert list(table.due(620)) == [("a", 120)]


def test_a_job_tracked_already_is_not_adopted_twice() -> None:
    table = Unheard(after=60)
    table.created("a", now=0)
    assert not table.adopt("a", look_at=5)
    assert list(table.due(5)) == []
    assert list(table.due(60)) == [("a", 60)]
    full = Unheard(after=60, capacity=1)
    full.created("x", now=0)
    assert not full.adopt("y", look_at=5)
    assert full.dropped == 1


def test_waiting_lists_the_jobs_tracked_soonest_look_first() -> None:
    table = Unheard(after=60)
    table.created("a", now=0)
    table.created("b", now=10)
    table.adopt("c", look_at=30)
    assert table.waiting(limit=10) == [("c", 30), ("a", 60), ("b", 70)]
    assert table.waiting(limit=2) == [("c", 30), ("a", 60)]
    table.heard("c")
    assert table.waiting(limit=10) == [("a", 60), ("b", 70)]
