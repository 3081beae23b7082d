"""Ledgers of unheard-of jobs (ledgers.py): their saved form, and when a replica counts as gone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from job_orchestrator.ledgers import (
    CAPACITY,
    Ledger,
    Sightings,
    directory,
    members,
    saved_before,
    unsaved_jobs,
    unsaved_query,
)

LEDGER = Ledger("i1", "replica-1", 1000.0, 5.0, (("job-a", 1060.0), ("job-b", 1090.5)))


def test_a_ledger_reads_back_as_saved() -> None:
    assert Ledger.from_value(LEDGER.value()) == LEDGER
    spent = LEDGER.spent("i2", 2000.0)
    assert Ledger.from_value(spent.value()) == spent
    assert spent.jobs == () and spent.adopted_by == "i2" and spent.saved_at == 2000.0


def test_what_is_not_a_ledger_reads_as_none_and_bad_entries_are_left_out() -> None:
    not_ledgers: list[Any] = [None, [], "x", {"replica": "r", "savedAt": 1}, {"instance": "i"}]
    for value in not_ledgers:
        assert Ledger.from_value(value) is None
    assert Ledger.from_value({"instance": "i", "replica": "r", "savedAt": True}) is None
    value = LEDGER.value() | {"jobs": [["ok", 5], ["no"], [1, 2], ["bool", False], "x", ["f", 1.5]]}
    ledger = Ledger.from_value(value)
    assert ledger is not None and ledger.jobs == (("ok", 5.0), ("f", 1.5))


def test_a_ledger_is_orphaned_once_seen_unchanged_for_longer_than_the_limit() -> None:
    sightings = Sightings(stale_after=20, saves=4)
    assert not sightings.orphaned(LEDGER, now=5000)  # first seen: its clock is not ours
    assert not sightings.orphaned(LEDGER, now=5020)
    assert sightings.orphaned(LEDGER, now=5020.1)


def test_a_ledger_saved_again_is_not_orphaned() -> None:
    sightings = Sightings(stale_after=20, saves=4)
    sightings.orphaned(LEDGER, now=0)
    newer = Ledger("i1", "replica-1", 1005.0, 5.0, LEDGER.jobs)
    assert not sightings.orphaned(newer, now=19)
    assert not sightings.orphaned(newer, now=39)  # 20 s since this version was first seen
    assert sightings.orphaned(newer, now=40)


def test_a_stopped_ledger_is_orphaned_at_once_and_a_spent_one_never() -> None:
    sightings = Sightings(stale_after=20, saves=4)
    stopped = Ledger("i1", "replica-1", 1000.0, 5.0, LEDGER.jobs, stopped=True)
    assert sightings.orphaned(stopped, now=0)
    spent = stopped.spent("i2", 1001.0)
    assert not sightings.orphaned(spent, now=0)
    assert not sightings.orphaned(spent, now=10_000)


def test_a_ledger_saved_less_often_than_ours_gets_its_own_saves_to_change() -> None:
    """A replica configured with a longer requeue time saves its ledger less often."""
    sightings = Sightings(stale_after=2, saves=4)
    slow = Ledger("i1", "replica-1", 1000.0, 5.0, ())
    sightings.orphaned(slow, now=0)
    assert not sightings.orphaned(slow, now=20)  # four of its 5 s intervals, not our 2 s
    assert sightings.orphaned(slow, now=20.1)
    old = Ledger.from_value({"instance": "i", "replica": "r", "savedAt": 1})
    assert old is not None and old.save_every == 0.0  # no interval saved: ours decides


def test_forgotten_replicas_are_seen_afresh() -> None:
    sightings = Sightings(stale_after=20, saves=4)
    sightings.orphaned(LEDGER, now=0)
    sightings.keep_only(["other"])
    assert not sightings.orphaned(LEDGER, now=100)  # a first sighting again


def test_the_directory_lists_each_instance_once() -> None:
    assert members(directory(["b", "a", "b"])) == ["a", "b"]
    assert members(None) == []
    assert members({"instances": "a"}) == []
    assert members({"instances": ["a", 3]}) == ["a"]


def test_the_query_for_unsaved_jobs_asks_for_its_creators_new_jobs_newest_first() -> None:
    query = unsaved_query("i1", 100, "300")
    assert query["filter"] == {
        "AND": [{"EQ": {"kind": "job"}}, {"EQ": {"status": "New"}}, {"EQ": {"createdBy": "i1"}}]
    }
    assert query["sort"][0] == {"key": "createdAt", "order": "DESC"}
    assert query["page"] == {"limit": 100, "token": "300"}
    assert unsaved_query("i1", 5)["page"] == {"limit": 5}


def test_only_rows_that_are_the_creators_new_jobs_are_taken() -> None:
    job = {"kind": "job", "id": "a", "status": "New", "createdBy": "i1"}
    rows: list[dict[str, Any]] = [
        job | {"createdAt": "2026-11-25T10:00:01.500Z"},
        job | {"id": "started", "status": "InProgress", "createdAt": "2026-11-25T10:00:00Z"},
        job | {"id": "others", "createdBy": "i2", "createdAt": "2026-11-25T10:00:00Z"},
        job | {"id": "not-a-job", "kind": "doc", "createdAt": "2026-11-25T10:00:00Z"},
        job | {"id": "bad-time", "createdAt": "yesterday"},
        job | {"id": 7, "createdAt": "2026-11-25T10:00:00Z"},
        {"id": "no-fields"},
    ]
    assert unsaved_jobs(rows, "i1") == [
        ("a", datetime(2026, 11, 25, 10, 0, 1, 500000, UTC).timestamp())
    ]


def test_a_ledger_covers_what_was_created_a_second_before_its_save_unless_it_was_full() -> None:
    assert saved_before(LEDGER, LEDGER.saved_at - 1.5)
    assert not saved_before(LEDGER, LEDGER.saved_at - 0.5)  # maybe not in its table yet
    assert not saved_before(LEDGER, LEDGER.saved_at + 3)  # after the save
    full = Ledger("i1", "r", 1000.0, 5.0, tuple((f"j{n}", 0.0) for n in range(CAPACITY)))
    assert not saved_before(full, 10.0)  # older jobs may have been left out
