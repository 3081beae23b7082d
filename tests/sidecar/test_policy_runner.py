"""daprd's policy runner for component calls, on plain coroutines (no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.breaker import BreakerSpec, CircuitBreaker, compile_trip
from sidecar.policy_runner import run
from sidecar.resiliency import Policy, RetryPolicy


class StoreError(Exception):
    pass


class Conflict(StoreError):
    pass


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then answers ``"ok"``."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or StoreError("down")
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


RETRY = RetryPolicy(policy="constant", duration=0.0, max_retries=3)


async def test_failures_are_retried_until_an_attempt_succeeds() -> None:
    flaky = Flaky(2)
    assert await run(Policy(retry=RETRY), None, flaky, StoreError) == "ok"
    assert flaky.calls == 3


async def test_the_last_failure_is_raised_when_retries_run_out() -> None:
    flaky = Flaky(10)
    with pytest.raises(StoreError, match="down"):
        await run(Policy(retry=RETRY), None, flaky, StoreError)
    assert flaky.calls == 4


async def test_a_permanent_failure_is_not_retried() -> None:
    flaky = Flaky(10, Conflict("etag mismatch"))
    with pytest.raises(Conflict):
        await run(Policy(retry=RETRY), None, flaky, StoreError, (Conflict,))
    assert flaky.calls == 1


async def test_errors_of_another_kind_pass_through_at_once() -> None:
    flaky = Flaky(10, ValueError("a bug"))
    with pytest.raises(ValueError):
        await run(Policy(retry=RETRY), None, flaky, StoreError)
    assert flaky.calls == 1


async def test_an_attempt_past_the_timeout_fails_as_a_deadline() -> None:
    async def forever() -> str:
        await asyncio.sleep(30)
        return "late"

    with pytest.raises(StoreError, match="context deadline exceeded"):
        await run(Policy(timeout=0.01), None, forever, StoreError)


async def test_an_open_breaker_refuses_for_good() -> None:
    spec = BreakerSpec("cb", program=compile_trip("consecutiveFailures >= 2"))
    breaker = CircuitBreaker(spec, "cb")
    flaky = Flaky(10)
    with pytest.raises(StoreError, match="circuit breaker is open"):
        await run(Policy(retry=RETRY, breaker=spec), breaker, flaky, StoreError)
    assert flaky.calls == 2  # the third attempt met the open breaker


async def test_a_retried_run_is_logged_as_daprd_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(2)
    with caplog.at_level("INFO", logger="sidecar.policy_runner"):
        await run(Policy(retry=RETRY), None, flaky, StoreError, name="component[statestore]")
    # dapr/kit's NotifyRecoverWithData: the first failure of a run, then its recovery.
    assert caplog.messages == [
        "Error processing operation component[statestore]. Retrying in 0s…",
        "Recovered processing operation component[statestore] after 3 attempts",
    ]
