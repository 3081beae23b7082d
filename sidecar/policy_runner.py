"""daprd's policy runner for component calls: timeout per attempt, circuit breaker, retries.

As ``pkg/resiliency/policy.go``: each attempt is bounded by the policy's timeout (its expiry
fails the attempt with "context deadline exceeded") and counted by the breaker; a failure of
the component's own error type is retried under the retry policy unless it is permanent (an
etag error of a single save or delete); an open breaker fails at once, for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sidecar.breaker import BreakerError, CircuitBreaker
from sidecar.durations import format_go_duration
from sidecar.resiliency import Policy

logger = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


async def run(
    policy: Policy,
    breaker: CircuitBreaker | None,
    attempt: Callable[[], Awaitable[T]],
    failure: type[E],
    permanent: tuple[type[Exception], ...] = (),
    name: str = "",
) -> T:
    """``attempt()`` under ``policy``; its ``failure`` errors are retried, the last one raised.
    ``name`` is the operation in daprd's log lines on a first retry and on a recovery (e.g.
    ``endpoint[app, app:method]``)."""
    started = time.monotonic()
    retry = 0
    while True:
        token = 0
        if breaker is not None:
            try:
                token = breaker.before()
            except BreakerError as exc:
                raise failure(str(exc)) from None
        error: Exception
        try:
            async with asyncio.timeout(policy.timeout):
                result = await attempt()
        except TimeoutError:
            error = failure("context deadline exceeded")
        except failure as exc:
            error = exc
        else:
            if breaker is not None:
                breaker.after(token, True)
            if retry and name:
                logger.info("Recovered processing operation %s after %d attempts", name, retry + 1)
            return result
        if breaker is not None:
            breaker.after(token, False)
        if policy.retry is None or isinstance(error, permanent):
            raise error
        delay = policy.retry.delay(retry, time.monotonic() - started)
        if delay is None:
            raise error
        if name and not retry:
            # dapr/kit's NotifyRecoverWithData reports only the first failure of a run.
            logger.warning(
                "Error processing operation %s. Retrying in %s…", name, format_go_duration(delay)
            )
        await asyncio.sleep(delay)
        retry += 1
