"""Retry, timeout and circuit breaker policies of ``kind: Resiliency`` documents, and which
applies where (sidecar.resiliency_loading reads the documents).

Mirrors daprd's ``pkg/resiliency`` and dapr/kit ``retry``: a component named under
``spec.targets.components`` uses its ``inbound`` policies for deliveries and its ``outbound``
ones for the sidecar's calls to it (none in a direction its target leaves out), an app named
under ``spec.targets.apps`` its policies for invocations of it; otherwise the default-named
policies (``DefaultPubsubComponentInbound...``, ``DefaultStatestoreComponentOutbound...``,
``DefaultApp...`` down to ``DefaultRetryPolicy``) apply; with none of them there is no policy
(only daprd's built-in invocation retry remains).
daprd's built-in policies (``DaprBuiltIn...Retries``) apply where it uses them and to targets that
name them, and a retry policy of the same name replaces one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.breaker import BreakerSpec


class ResiliencyError(ValueError):
    """Resiliency documents the sidecar refuses to start with; the message names why."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """dapr/kit ``retry.Config`` with its defaults (constant 5 s, retry forever)."""

    policy: str = "constant"  #: "constant" or "exponential"
    duration: float = 5.0
    initial_interval: float = 0.5
    randomization_factor: float = 0.5
    multiplier: float = 1.5
    max_interval: float = 60.0
    max_elapsed: float = 900.0  #: exponential only; 0 = no limit
    max_retries: int = -1  #: -1 = unlimited
    #: ``matching``: the status codes whose answers are retried; None = every code.
    http_codes: tuple[tuple[int, int], ...] | None = None
    grpc_codes: tuple[tuple[int, int], ...] | None = None

    def retries_code(self, code: int) -> bool:
        """daprd's statusCodeNeedRetry: 0-16 is a gRPC code, 100-599 an HTTP status."""
        if GRPC_CODES[0] <= code <= GRPC_CODES[1]:
            allowed = self.grpc_codes
        elif HTTP_CODES[0] <= code <= HTTP_CODES[1]:
            allowed = self.http_codes
        else:
            return False
        return allowed is None or any(low <= code <= high for low, high in allowed)

    def delay(self, retry: int, elapsed: float, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based), or None when exhausted."""
        if self.max_retries >= 0 and retry >= self.max_retries:
            return None
        if self.policy == "constant":
            return self.duration
        interval = min(self.initial_interval * self.multiplier**retry, self.max_interval)
        spread = self.randomization_factor * interval
        value = interval - spread + (rng or random).random() * 2 * spread
        if self.max_elapsed and elapsed + value > self.max_elapsed:
            return None
        return value


HTTP_CODES = (100, 599)  #: the codes daprd reads as HTTP statuses in ``matching``
GRPC_CODES = (0, 16)  #: and as gRPC codes

INITIALIZATION_RETRIES = "DaprBuiltInInitializationRetries"
#: daprd's built-in retry policies (pkg/resiliency/resiliency.go, addBuiltInPolicies), each a
#: Go struct literal: what it leaves out is zero, so the reminders' policy has no retries.
#: ``DaprBuiltInInitializationRetries`` runs ``GET /dapr/subscribe``: at most 3 retries, 500 ms
#: growing by 1.5 up to 1 s, 10 s in all.
_BUILT_IN_RETRIES = {
    "DaprBuiltInServiceRetries": RetryPolicy(duration=1.0, max_retries=3),
    "DaprBuiltInActorRetries": RetryPolicy(duration=1.0, max_retries=3),
    # Exponential at kit's defaults (500 ms, x1.5, at most 60 s apart, 15 min in all).
    "DaprBuiltInActorReminderRetries": RetryPolicy(
        policy="exponential", duration=0.0, max_retries=0
    ),
    INITIALIZATION_RETRIES: RetryPolicy(
        policy="exponential",
        duration=2.0,
        initial_interval=0.5,
        multiplier=1.5,
        max_interval=1.0,
        max_elapsed=10.0,
        max_retries=3,
    ),
    "DaprBuiltInActorNotFoundRetries": RetryPolicy(duration=1.0, max_retries=5),
}
#: Every name daprd treats as built in: an override of one keeps at least 3 retries.
BUILT_IN_RETRY_NAMES = frozenset(_BUILT_IN_RETRIES)
#: Built in and never overridden (daprd's isProtectedPolicy).
PROTECTED_RETRY_NAMES = frozenset({"DaprBuiltInActorNotFoundRetries"})


@dataclass(frozen=True, slots=True)
class Policy:
    retry: RetryPolicy | None = None  #: None = a single attempt
    timeout: float | None = None  #: per attempt, seconds
    breaker: BreakerSpec | None = None

    @property
    def empty(self) -> bool:
        return self.retry is None and self.timeout is None and self.breaker is None


@dataclass(frozen=True, slots=True)
class Resiliency:
    """All policies loaded for this app; ``pubsub_inbound`` is read once per subscription."""

    retries: Mapping[str, RetryPolicy] = field(default_factory=dict)
    timeouts: Mapping[str, float] = field(default_factory=dict)
    breakers: Mapping[str, BreakerSpec] = field(default_factory=dict)
    #: Inbound policy names of each component named under targets.components.
    components: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    apps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  #: policy names
    #: Outbound policy names of the same components (empty where its target has none).
    outbound: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def pubsub_inbound(self, component: str) -> Policy:
        return self._policy(
            self.components.get(component),
            ("PubsubComponentInbound", "ComponentInbound", "Component"),
        )

    def component_outbound(self, component: str, kind: str) -> Policy:
        """The policy for calls to ``component`` (``kind``: "Statestore", "Pubsub")."""
        names = self.outbound.get(component)
        levels = (f"{kind}ComponentOutbound", "ComponentOutbound", "Component")
        return self._policy(names, levels)

    def endpoint(self, app_id: str) -> Policy:
        """The policy for invoking ``app_id`` (daprd's EndpointPolicy)."""
        return self._policy(self.apps.get(app_id), ("App",))

    def built_in(self, name: str) -> Policy:
        """daprd's BuiltInPolicy: the named retry policy (a user's of that name, else daprd's
        own), with no timeout and no circuit breaker."""
        return Policy(retry=self._retry(name))

    def _retry(self, name: str) -> RetryPolicy | None:
        """The retry policy of that name: a user's, else daprd's built-in one, else none (a
        name nothing defines means no retries in daprd, which logs nothing about it)."""
        return self.retries.get(name) or _BUILT_IN_RETRIES.get(name)

    def _policy(self, names: Mapping[str, str] | None, levels: tuple[str, ...]) -> Policy:
        if names is not None:
            retry_name, timeout_name = names.get("retry", ""), names.get("timeout", "")
            breaker_name = names.get("circuitBreaker", "")
        else:
            retry_name = _first_default(self.retries, "Retry", levels)
            timeout_name = _first_default(self.timeouts, "Timeout", levels)
            breaker_name = _first_default(self.breakers, "CircuitBreaker", levels)
        # daprd looks each name up in its maps: an undefined one is no policy of that kind.
        # A timeout of zero or less bounds nothing (pkg/resiliency/policy.go: ``if def.t > 0``).
        timeout = self.timeouts.get(timeout_name, 0.0) if timeout_name else 0.0
        return Policy(
            retry=self._retry(retry_name) if retry_name else None,
            timeout=timeout if timeout > 0 else None,
            breaker=self.breakers.get(breaker_name) if breaker_name else None,
        )


def _first_default(policies: Mapping[str, object], kind: str, levels: tuple[str, ...]) -> str:
    for level in (*levels, ""):
        name = f"Default{level}{kind}Policy"
        if name in policies:
            return name
    return ""
