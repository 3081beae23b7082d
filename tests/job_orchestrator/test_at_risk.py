"""The finals a store failure may have cost their event (at_risk.py): pure bookkeeping."""

from __future__ import annotations

from job_orchestrator.at_risk import AtRisk


def test_a_failure_makes_suspects_of_the_finals_of_its_window_only() -> None:
    table = AtRisk(window=30)
    table.wrote("old", now=0)
    table.wrote("a", now=20)
    table.wrote("b", now=40)
    table.failed(now=45)  # "old" was written 45 s before: its window passed
    assert table.take(10) == ["a", "b"]
    assert table.take(10) == []


def test_finals_written_after_a_failure_wait_for_the_next_one() -> None:
    table = AtRisk(window=30)
    table.wrote("a", now=0)
    table.failed(now=1)
    table.wrote("b", now=2)
    assert table.take(10) == ["a"]
    assert table.watching(now=3)
    table.failed(now=4)
    assert table.take(10) == ["b"]
    assert not table.watching(now=4)


def test_watching_lasts_for_the_window_after_the_last_final() -> None:
    table = AtRisk(window=30)
    assert not table.watching(now=0)
    table.wrote("a", now=10)
    assert table.watching(now=39)
    assert not table.watching(now=41)
    table.failed(now=42)
    assert table.take(10) == []


def test_suspects_come_out_oldest_first_in_chunks_each_once() -> None:
    table = AtRisk(window=30)
    for n in range(5):
        table.wrote(f"j{n}", now=n)
    table.wrote("j1", now=5)  # written twice (announced again): suspect once
    table.failed(now=6)
    assert table.suspects == 5
    assert table.take(2) == ["j0", "j1"]
    assert table.take(2) == ["j2", "j3"]
    assert table.take(2) == ["j4"]


def test_a_final_write_that_failed_is_suspect_at_once() -> None:
    table = AtRisk(window=30)
    table.unsure("a")
    table.unsure("a")
    assert table.take(10) == ["a"]


def test_one_put_back_goes_to_the_end() -> None:
    table = AtRisk(window=30)
    for job_id in ("a", "b", "c"):
        table.unsure(job_id)
    taken = table.take(1)
    table.unsure(taken[0])  # its announcement failed: try it again after the others
    assert table.take(10) == ["b", "c", "a"]


def test_a_full_table_drops_the_oldest_and_counts_them() -> None:
    table = AtRisk(window=30, capacity=3)
    table.unsure("s")
    for n in range(3):
        table.wrote(f"w{n}", now=n)
    assert table.dropped == 1  # w0 went: a final in its window is only likely at risk
    table.wrote("w3", now=3)
    assert table.dropped == 2
    table.failed(now=4)
    assert table.take(10) == ["s", "w2", "w3"]
