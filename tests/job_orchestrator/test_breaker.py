"""Job changes held back while the state store is down (breaker.py): pure bookkeeping."""

from __future__ import annotations

from job_orchestrator.breaker import Breaker


def breaker_failing(since: float, until: float) -> Breaker:
    """A breaker that saw a failure every 0.1 s from ``since`` to ``until``."""
    breaker = Breaker(confirm_after=1.0, trial_every=0.5)
    steps = round((until - since) * 10)
    for step in range(steps + 1):
        breaker.failed(now=since + step / 10)
    return breaker


def test_changes_go_through_for_the_first_second_of_failures() -> None:
    breaker = breaker_failing(10, 10.8)
    assert all(breaker.allows(now=10.9) for _ in range(5))
    assert breaker.refused == 0


def test_then_one_change_per_trial_interval_is_sent() -> None:
    breaker = breaker_failing(10, 11.0)
    sent = []
    for now in (11.0, 11.1, 11.2, 11.5, 11.6, 11.9, 12.0):
        breaker.failed(now=now - 0.05)  # the failures go on
        if breaker.allows(now):
            sent.append(now)
    assert sent == [11.0, 11.5, 12.0]
    assert breaker.refused == 4


def test_an_answer_closes_it_at_once() -> None:
    breaker = breaker_failing(10, 12)
    assert breaker.allows(now=12)
    assert not breaker.allows(now=12.1)
    breaker.answered()
    assert all(breaker.allows(now=12.2) for _ in range(5))
    breaker.failed(now=13)  # a new outage counts from its own first failure
    assert breaker.allows(now=13.5)
    assert breaker.failing_since == 13


def test_failures_with_answers_between_never_open_it() -> None:
    breaker = Breaker(confirm_after=1.0, trial_every=0.5)
    for second in range(10):
        breaker.failed(now=second)
        breaker.answered()
        assert breaker.allows(now=second + 0.9)
    assert breaker.refused == 0


def test_failures_that_stopped_coming_do_not_hold_changes_back() -> None:
    """An idle replica's last failure, long ago (a refused write, a blip): a burst of changes
    all go; if the store is still down, the first failure back holds the rest back at once."""
    breaker = breaker_failing(10, 11.5)
    assert breaker.allows(now=11.6)
    assert not breaker.allows(now=11.7)
    assert all(breaker.allows(now=60) for _ in range(16))
    breaker.failed(now=60.1)
    assert breaker.allows(now=60.2)  # a trial: none sent since 11.6
    assert not breaker.allows(now=60.3)
