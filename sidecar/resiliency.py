"""Retry and timeout policies from ``kind: Resiliency`` documents, for pub/sub inbound delivery.

Mirrors daprd's ``pkg/resiliency`` and dapr/kit ``retry``: a component named under
``spec.targets.components`` uses its ``inbound`` policies; otherwise the default-named policies
(``DefaultPubsubComponentInboundRetryPolicy`` ... ``DefaultRetryPolicy``) apply; with none of
them there is no retry at all (a failed delivery goes straight to dead letter or redelivery).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    retry: RetryPolicy | None = None  #: None = a single attempt
    timeout: float | None = None  #: per attempt, seconds


@dataclass(frozen=True, slots=True)
class Resiliency:
    """All policies loaded for this app; ``pubsub_inbound`` is read once per subscription."""

    retries: Mapping[str, RetryPolicy] = field(default_factory=dict)
    timeouts: Mapping[str, float] = field(default_factory=dict)
    components: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  #: inbound names

    def pubsub_inbound(self, component: str) -> InboundPolicy:
        names = self.components.get(component)
        if names is not None:
            retry_name, timeout_name = names.get("retry", ""), names.get("timeout", "")
        else:
            retry_name = _first_default(self.retries, "Retry")
            timeout_name = _first_default(self.timeouts, "Timeout")
        return InboundPolicy(
            retry=self.retries.get(retry_name) if retry_name else None,
            timeout=self.timeouts.get(timeout_name) if timeout_name else None,
        )


def _first_default(policies: Mapping[str, object], kind: str) -> str:
    for level in ("PubsubComponentInbound", "ComponentInbound", "Component", ""):
        name = f"Default{level}{kind}Policy"
        if name in policies:
            return name
    return ""


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
            else:
                logger.warning("resiliency retry policy %s: field %r is not supported", name, key)
    except (TypeError, ValueError) as exc:
        raise ResiliencyError(f"invalid retry configuration {name!r}: {exc}") from None
    return RetryPolicy(**values)


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
    components: dict[str, dict[str, str]] = {}
    for name, spec in specs:
        policies = spec.get("policies") or {}
        for policy_name, retry_spec in (policies.get("retries") or {}).items():
            retries[policy_name] = _retry_policy(policy_name, retry_spec or {})
        for policy_name, value in (policies.get("timeouts") or {}).items():
            try:
                timeouts[policy_name] = _duration(value)
            except ValueError as exc:
                raise ResiliencyError(f"invalid duration {policy_name!r}, {value}: {exc}") from None
        if policies.get("circuitBreakers"):
            logger.warning("resiliency %s: circuit breakers are not supported and ignored", name)
        targets = spec.get("targets") or {}
        for kind in ("apps", "actors"):
            if targets.get(kind):
                logger.warning(
                    "resiliency %s: targets.%s is not supported and ignored (only pub/sub "
                    "inbound policies are applied)",
                    name,
                    kind,
                )
        for component, target in (targets.get("components") or {}).items():
            if (target or {}).get("outbound"):
                logger.warning(
                    "resiliency %s: component %s: outbound policies are not supported and "
                    "ignored (only pub/sub inbound policies are applied)",
                    name,
                    component,
                )
            inbound = (target or {}).get("inbound") or {}
            components[component] = {
                "retry": str(inbound.get("retry") or ""),
                "timeout": str(inbound.get("timeout") or ""),
            }
    for component, names in components.items():
        for kind, known in (("retry", retries), ("timeout", timeouts)):
            if names[kind] and names[kind] not in known:
                section = "retries" if kind == "retry" else "timeouts"
                raise ResiliencyError(
                    f"component {component!r} inbound {kind} policy {names[kind]!r} is not defined "
                    f"under spec.policies.{section}"
                )
    return Resiliency(retries=retries, timeouts=timeouts, components=components)
