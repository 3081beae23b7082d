"""Retry, timeout and circuit breaker policies from ``kind: Resiliency`` documents.

Mirrors daprd's ``pkg/resiliency`` and dapr/kit ``retry``: a component named under
``spec.targets.components`` uses its ``inbound`` policies for deliveries and its ``outbound``
ones for the sidecar's calls to it (none in a direction its target leaves out), an app named
under ``spec.targets.apps`` its policies for invocations of it; otherwise the default-named
policies (``DefaultPubsubComponentInbound...``,
``DefaultStatestoreComponentOutbound...``, ``DefaultApp...`` down to ``DefaultRetryPolicy``)
apply; with none of them there is no policy (only daprd's built-in invocation retry remains).
daprd's built-in policies (``DaprBuiltIn...Retries``) apply where it uses them and to targets that
name them, and a retry policy of the same name replaces one.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sidecar.breaker import BreakerSpec, compile_trip
from sidecar.durations import parse_go_duration

logger = logging.getLogger(__name__)


class ResiliencyError(ValueError):
    """A Resiliency document has an invalid policy; the message names it."""


def _duration(value: Any) -> float:
    # Go decodes a bare number into time.Duration as nanoseconds.
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return float(value) * 1e-9
    return parse_go_duration(str(value))


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
        if _GRPC_CODES[0] <= code <= _GRPC_CODES[1]:
            allowed = self.grpc_codes
        elif _HTTP_CODES[0] <= code <= _HTTP_CODES[1]:
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


_HTTP_CODES = (100, 599)
_GRPC_CODES = (0, 16)

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
_BUILT_IN_NAMES = frozenset(_BUILT_IN_RETRIES)
#: Built in and never overridden (daprd's isProtectedPolicy).
_PROTECTED_NAMES = frozenset({"DaprBuiltInActorNotFoundRetries"})


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


def _code_ranges(patterns: str, valid: tuple[int, int]) -> tuple[tuple[int, int], ...] | None:
    """daprd's parsePatterns: ``"500-599,429"``; an empty string matches every code."""
    if not patterns:
        return None
    ranges = []
    for pattern in patterns.split(","):
        if not pattern:
            continue
        bounds = pattern.split("-")
        if len(bounds) > 2:
            raise ValueError(f"invalid pattern {pattern}, more than one '-' exists")
        try:
            start, end = int(bounds[0]), int(bounds[-1])
        except ValueError:
            raise ValueError(f"invalid pattern {pattern}: not a status code") from None
        for code, which in ((start, "start"), (end, "end")):
            if not valid[0] <= code <= valid[1]:
                raise ValueError(f"invalid pattern {pattern}, {which} code {code} is not valid")
        if start > end:
            raise ValueError(f"invalid pattern {pattern}, start code {start} is greater than end")
        ranges.append((start, end))
    return tuple(ranges)


def _retry_policy(name: str, spec: Mapping[str, Any]) -> RetryPolicy:
    values: dict[str, Any] = {}
    try:
        for key, value in spec.items():
            if key == "policy":
                policy = str(value).lower()
                if policy not in ("constant", "exponential"):
                    raise ValueError(f"unexpected back off policy type: {value}")
                values["policy"] = policy
            elif key in ("duration", "initialInterval", "maxInterval", "maxElapsedTime"):
                attr = {
                    "duration": "duration",
                    "initialInterval": "initial_interval",
                    "maxInterval": "max_interval",
                    "maxElapsedTime": "max_elapsed",
                }[key]
                values[attr] = _duration(value)
            elif key == "maxRetries":
                values["max_retries"] = int(value)
            elif key == "randomizationFactor":
                values["randomization_factor"] = float(value)
            elif key == "multiplier":
                values["multiplier"] = float(value)
            elif key == "matching":
                matching = value or {}
                if not isinstance(matching, dict):
                    raise ValueError("matching must be a mapping")
                codes = str(matching.get("httpStatusCodes") or "")
                values["http_codes"] = _code_ranges(codes, _HTTP_CODES)
                codes = str(matching.get("gRPCStatusCodes") or "")
                values["grpc_codes"] = _code_ranges(codes, _GRPC_CODES)
            else:
                logger.warning("resiliency retry policy %s: field %r is not supported", name, key)
    except (TypeError, ValueError) as exc:
        raise ResiliencyError(f"invalid retry configuration {name!r}: {exc}") from None
    return RetryPolicy(**values)


def _breaker(name: str, spec: Mapping[str, Any]) -> BreakerSpec:
    """A circuit breaker as daprd decodes one (maxRequests, interval, timeout, trip)."""
    values: dict[str, Any] = {}
    try:
        for key, value in spec.items():
            if key == "maxRequests":
                values["max_requests"] = int(value)
                if values["max_requests"] < 0:
                    raise ValueError(f"maxRequests must not be negative, got {value}")
            elif key in ("interval", "timeout"):
                values[key] = _duration(value)
            elif key == "trip":
                values["trip"] = str(value)
                values["program"] = compile_trip(str(value))
            else:
                logger.warning(
                    "resiliency circuit breaker %s: field %r is not supported", name, key
                )
    except (TypeError, ValueError) as exc:
        raise ResiliencyError(f"invalid circuit breaker configuration {name!r}: {exc}") from None
    return BreakerSpec(name=name, **values)


def _names(target: Mapping[str, Any] | None) -> dict[str, str]:
    """The policy names a target refers to."""
    target = target or {}
    return {kind: str(target.get(kind) or "") for kind in ("retry", "timeout", "circuitBreaker")}


def _applies(document: Mapping[str, Any], app_id: str) -> bool:
    scopes = document.get("scopes") or []
    return not scopes or app_id in scopes


def parse_resiliency(documents: Iterable[Mapping[str, Any]], app_id: str) -> Resiliency:
    """Merge raw ``kind: Resiliency`` YAML documents scoped to ``app_id`` (later ones win)."""
    return resiliency_from_specs(
        ((doc.get("metadata") or {}).get("name", "<unnamed>"), doc.get("spec") or {})
        for doc in documents
        if doc.get("kind") == "Resiliency" and _applies(doc, app_id)
    )


def resiliency_from_specs(specs: Iterable[tuple[str, Mapping[str, Any]]]) -> Resiliency:
    """Merge ``(name, spec)`` pairs of already scoped Resiliency resources (later ones win)."""
    retries: dict[str, RetryPolicy] = {}
    timeouts: dict[str, float] = {}
    breakers: dict[str, BreakerSpec] = {}
    components: dict[str, dict[str, str]] = {}
    apps: dict[str, dict[str, str]] = {}
    outbound: dict[str, dict[str, str]] = {}
    for name, spec in specs:
        policies = spec.get("policies") or {}
        for policy_name, retry_spec in (policies.get("retries") or {}).items():
            retry = _retry_policy(policy_name, retry_spec or {})
            if policy_name in _PROTECTED_NAMES:
                logger.warning(
                    "Attempted to override protected policy %s which is not allowed. Ignoring "
                    "provided policy and using default.",
                    policy_name,
                )
                continue
            if policy_name in _BUILT_IN_NAMES and retry.max_retries < 3:
                logger.warning(
                    "Attempted override of %s did not meet minimum retry count, resetting to 3.",
                    policy_name,
                )
                retry = replace(retry, max_retries=3)
            retries[policy_name] = retry
        for policy_name, value in (policies.get("timeouts") or {}).items():
            try:
                timeouts[policy_name] = _duration(value)
            except ValueError as exc:
                raise ResiliencyError(f"invalid duration {policy_name!r}, {value}: {exc}") from None
        for policy_name, breaker_spec in (policies.get("circuitBreakers") or {}).items():
            breakers[policy_name] = _breaker(policy_name, breaker_spec or {})
        targets = spec.get("targets") or {}
        if targets.get("actors"):
            logger.warning("resiliency %s: targets.actors is not supported and ignored", name)
        for app, target in (targets.get("apps") or {}).items():
            apps[app] = _names(target)
        # A named component takes its names for both directions from this target, whatever
        # it leaves out, and the default policies apply to neither: daprd's decodeTargets
        # stores both, and ComponentOutboundPolicy/ComponentInboundPolicy fall back to the
        # defaults only for a component absent from its map.
        for component, target in (targets.get("components") or {}).items():
            components[component] = _names((target or {}).get("inbound"))
            outbound[component] = _names((target or {}).get("outbound"))
    # daprd resolves a target's policy names only when it applies them, and an undefined name
    # is simply no policy, except a component's circuit breaker: daprd builds it from a nil
    # template and crashes at the component's first call. Refused here, at start.
    # daprd logs nothing for the others; a warning here names a likely typo.
    targets = [(f"component {c!r} inbound", n) for c, n in components.items()]
    targets += [(f"component {c!r} outbound", n) for c, n in outbound.items()]
    for target, names in targets:
        if names["circuitBreaker"] and names["circuitBreaker"] not in breakers:
            raise ResiliencyError(
                f"{target} circuitBreaker policy {names['circuitBreaker']!r} is not defined "
                "under spec.policies.circuitBreakers"
            )
    targets += [(f"app {a!r}", n) for a, n in apps.items()]
    known = {"retry": {*retries, *_BUILT_IN_NAMES}, "timeout": timeouts, "circuitBreaker": breakers}
    for target, names in targets:
        for kind, defined in known.items():
            if names[kind] and names[kind] not in defined:
                logger.warning(
                    "resiliency: %s names %s policy %r, which is not defined: no %s applies",
                    target,
                    kind,
                    names[kind],
                    kind,
                )
    return Resiliency(
        retries=retries,
        timeouts=timeouts,
        breakers=breakers,
        components=components,
        apps=apps,
        outbound=outbound,
    )
