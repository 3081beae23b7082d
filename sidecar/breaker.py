"""Circuit breakers of resiliency policies, as daprd's ``pkg/resiliency/breaker`` on gobreaker.

Closed: calls pass, their outcomes are counted, and a failure that makes the ``trip`` CEL
expression true (default ``consecutiveFailures > 5``) opens the breaker. Open: calls fail at
once ("circuit breaker is open") until ``timeout`` (default 60 s) passed. Half-open: up to
``maxRequests`` (default 1) calls pass ("too many requests" beyond); that many successes in a row
close it, one failure opens it again. In the closed state the counts are cleared every
``interval`` (0: never). Outcomes of calls started before a state change are ignored.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cel

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
_DEFAULT_TIMEOUT = 60.0


class BreakerError(Exception):
    """The breaker refused the call; daprd treats it as permanent (no retry)."""


class BreakerOpenError(BreakerError):
    def __init__(self) -> None:
        super().__init__("circuit breaker is open")


class TooManyRequestsError(BreakerError):
    def __init__(self) -> None:
        super().__init__("too many requests")


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    """One ``policies.circuitBreakers`` entry."""

    name: str
    max_requests: int = 0  #: 0 = 1
    interval: float = 0.0  #: seconds; 0 = counts never cleared while closed
    timeout: float = 0.0  #: seconds; 0 = 60 s
    trip: str = ""  #: CEL over the counts; "" = consecutiveFailures > 5
    program: Any = None  #: the compiled ``trip``


def compile_trip(expression: str) -> Any:
    """The compiled trip expression (ValueError when it is not CEL)."""
    try:
        return cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"trip {expression!r} is not a valid CEL expression: {exc}") from None


@dataclass(slots=True)
class Counts:
    requests: int = 0
    total_successes: int = 0
    total_failures: int = 0
    consecutive_successes: int = 0
    consecutive_failures: int = 0

    def as_cel(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "totalSuccesses": self.total_successes,
            "totalFailures": self.total_failures,
            "consecutiveSuccesses": self.consecutive_successes,
            "consecutiveFailures": self.consecutive_failures,
        }


class CircuitBreaker:
    def __init__(
        self, spec: BreakerSpec, name: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spec = spec
        self.name = name
        self._clock = clock
        self._max_requests = spec.max_requests or 1
        self._timeout = spec.timeout or _DEFAULT_TIMEOUT
        self.state = CLOSED
        self._generation = 0
        self.counts = Counts()
        self._expiry: float | None = None
        self._new_generation(self._clock())

    def before(self) -> int:
        """Admit a call or raise BreakerError; the token to hand to ``after``."""
        state, generation = self._current(self._clock())
        if state == OPEN:
            raise BreakerOpenError()
        if state == HALF_OPEN and self.counts.requests >= self._max_requests:
            raise TooManyRequestsError()
        self.counts.requests += 1
        return generation

    def after(self, token: int, success: bool) -> None:
        """Count the outcome of the call admitted with ``token``."""
        now = self._clock()
        state, generation = self._current(now)
        if generation != token:
            return
        counts = self.counts
        if success:
            counts.total_successes += 1
            counts.consecutive_successes += 1
            counts.consecutive_failures = 0
            if state == HALF_OPEN and counts.consecutive_successes >= self._max_requests:
                self._set(CLOSED, now)
            return
        counts.total_failures += 1
        counts.consecutive_failures += 1
        counts.consecutive_successes = 0
        if state == HALF_OPEN or (state == CLOSED and self._ready_to_trip()):
            self._set(OPEN, now)

    def _ready_to_trip(self) -> bool:
        program = self.spec.program
        if program is None:
            return self.counts.consecutive_failures > 5
        try:
            result = program.execute(self.counts.as_cel())
        except (KeyError, RuntimeError, TypeError, ValueError):
            return False  # daprd: an expression that cannot be evaluated does not trip
        return result is True

    def _current(self, now: float) -> tuple[str, int]:
        if self.state == CLOSED and self._expiry is not None and self._expiry < now:
            self._new_generation(now)
        elif self.state == OPEN and self._expiry is not None and self._expiry < now:
            self._set(HALF_OPEN, now)
        return self.state, self._generation

    def _set(self, state: str, now: float) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        self._new_generation(now)
        logger.info('Circuit breaker "%s" changed state from %s to %s', self.name, previous, state)

    def _new_generation(self, now: float) -> None:
        self._generation += 1
        self.counts = Counts()
        if self.state == CLOSED:
            self._expiry = now + self.spec.interval if self.spec.interval > 0 else None
        elif self.state == OPEN:
            self._expiry = now + self._timeout
        else:
            self._expiry = None


class Breakers:
    """The breakers of one sidecar, as daprd keeps them: for invocations one per endpoint
    (``app:method``) in a least-recently-used cache per app (``ENDPOINT_CACHE_SIZE``), for
    components one per component (``component``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._groups: dict[str, OrderedDict[tuple[str, str], CircuitBreaker]] = {}

    def get(
        self, spec: BreakerSpec, instance: str, *, group: str = "", capacity: int = 0
    ) -> CircuitBreaker:
        """The breaker of ``instance`` under ``spec``; ``capacity`` bounds its group (0: none)."""
        breakers = self._groups.setdefault(group, OrderedDict())
        key = (spec.name, instance)
        breaker = breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(spec, f"{spec.name}-{instance}", self._clock)
            breakers[key] = breaker
            if capacity and len(breakers) > capacity:
                breakers.popitem(last=False)
        else:
            breakers.move_to_end(key)
        return breaker

    def component(self, spec: BreakerSpec, name: str) -> CircuitBreaker:
        """The one breaker of component ``name``, as daprd's componentCBs: shared by its
        inbound and outbound calls, made from the ``spec`` of whichever asks first."""
        breakers = self._groups.setdefault("component", OrderedDict())
        breaker = breakers.get(("", name))
        if breaker is None:
            breaker = CircuitBreaker(spec, f"{spec.name}-{name}", self._clock)
            breakers[("", name)] = breaker
        return breaker


#: daprd's defaultEndpointCacheSize: endpoints of one app with a breaker of their own.
ENDPOINT_CACHE_SIZE = 100
