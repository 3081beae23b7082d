"""Circuit breakers on a fake clock, against gobreaker's state machine as daprd uses it."""

from __future__ import annotations

import pytest

from sidecar.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerOpenError,
    Breakers,
    BreakerSpec,
    CircuitBreaker,
    TooManyRequestsError,
    compile_trip,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.after(breaker.before(), False)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.after(breaker.before(), True)


def test_the_default_trips_after_more_than_five_consecutive_failures() -> None:
    breaker = CircuitBreaker(BreakerSpec("cb"), "cb", Clock())
    fail(breaker, 5)
    succeed(breaker)  # a success resets the run
    fail(breaker, 5)
    assert breaker.state == CLOSED
    fail(breaker)
    assert breaker.state == OPEN
    with pytest.raises(BreakerOpenError, match="circuit breaker is open"):
        breaker.before()


def test_open_becomes_half_open_after_the_timeout_and_a_success_closes_it() -> None:
    clock = Clock()
    trip = "consecutiveFailures >= 2"
    spec = BreakerSpec("cb", timeout=10.0, trip=trip, program=compile_trip(trip))
    breaker = CircuitBreaker(spec, "cb", clock)
    fail(breaker, 2)
    assert breaker.state == OPEN
    clock.now += 10.0
    with pytest.raises(BreakerOpenError):  # not yet: the open state lasts past its expiry
        breaker.before()
    clock.now += 0.001
    token = breaker.before()
    assert breaker.state == HALF_OPEN
    with pytest.raises(TooManyRequestsError, match="too many requests"):
        breaker.before()  # maxRequests (1) already in flight
    breaker.after(token, True)
    assert breaker.state == CLOSED


def test_a_failure_while_half_open_opens_it_again() -> None:
    clock = Clock()
    spec = BreakerSpec("cb", timeout=1.0, max_requests=2, program=compile_trip("requests > 0"))
    breaker = CircuitBreaker(spec, "cb", clock)
    fail(breaker)
    assert breaker.state == OPEN
    clock.now += 2
    succeed(breaker)  # one of the two successes needed
    assert breaker.state == HALF_OPEN
    fail(breaker)
    assert breaker.state == OPEN


def test_the_interval_clears_the_counts_while_closed() -> None:
    clock = Clock()
    spec = BreakerSpec("cb", interval=5.0, program=compile_trip("totalFailures >= 3"))
    breaker = CircuitBreaker(spec, "cb", clock)
    fail(breaker, 2)
    clock.now += 6
    fail(breaker, 2)  # the first two were cleared
    assert breaker.state == CLOSED
    fail(breaker)
    assert breaker.state == OPEN


def test_outcomes_of_calls_admitted_before_a_state_change_are_ignored() -> None:
    clock = Clock()
    spec = BreakerSpec("cb", timeout=1.0, program=compile_trip("consecutiveFailures >= 1"))
    breaker = CircuitBreaker(spec, "cb", clock)
    slow = breaker.before()
    fail(breaker)
    assert breaker.state == OPEN
    clock.now += 2
    half_open = breaker.before()
    breaker.after(slow, True)  # from the closed generation: not counted
    assert breaker.state == HALF_OPEN
    breaker.after(half_open, True)
    assert breaker.state == CLOSED


def test_a_trip_that_cannot_be_evaluated_never_trips() -> None:
    breaker = CircuitBreaker(BreakerSpec("cb", program=compile_trip("nosuch > 1")), "cb", Clock())
    fail(breaker, 10)
    assert breaker.state == CLOSED


def test_a_trip_that_is_not_cel_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid CEL expression"):
        compile_trip("consecutiveFailures >")


def test_endpoint_breakers_are_kept_per_endpoint_in_a_bounded_cache() -> None:
    breakers = Breakers(Clock())
    spec = BreakerSpec("cb", program=compile_trip("consecutiveFailures >= 1"))

    def get(endpoint: str) -> CircuitBreaker:
        return breakers.get(spec, endpoint, group="app", capacity=2)

    fail(get("app:a"))
    fail(get("app:b"))
    assert get("app:a").state == OPEN  # kept, and now the most recently used
    assert get("app:c").state == CLOSED  # a third endpoint evicts b, the least recently used
    assert get("app:b").state == CLOSED  # a new breaker for b (which evicts a)
    assert get("app:c").state == CLOSED
    other = breakers.get(spec, "app:a", group="other-app", capacity=2)
    assert other.state == CLOSED  # another app's endpoints are its own
