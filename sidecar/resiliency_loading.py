"""How daprd turns ``kind: Resiliency`` documents into policies, skipping what it cannot read.

daprd 1.18 (pkg/resiliency/resiliency.go) first decodes each document into its Go type as it
loads the resources (LoadLocalResiliency; sidecar.resiliency_struct): one that does not fit is
logged "Could not parse resiliency file" and left out. FromConfigurations then decodes each
document's policies as dapr/kit does (DecodeConfiguration): timeouts, retries, circuit breakers,
then targets. The first bad value ends that document, logged "Could not read resiliency policy",
and what was decoded before it stays. Either way daprd, and the sidecar, start. Within each kind
daprd walks the names in Go's random map order; the sidecar takes them sorted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from sidecar import resources
from sidecar.breaker import BreakerSpec, compile_trip
from sidecar.durations import time_parse_duration
from sidecar.gofmt import go_quote
from sidecar.resiliency import (
    BUILT_IN_RETRY_NAMES,
    GRPC_CODES,
    HTTP_CODES,
    PROTECTED_RETRY_NAMES,
    Resiliency,
    ResiliencyError,
    RetryPolicy,
)
from sidecar.resiliency_struct import Decoded, StructError, decode_struct

logger = logging.getLogger(__name__)

_GO_INT = re.compile(r"[+-]?[0-9]+")  #: what strconv.ParseInt(s, 10, 64) and Atoi take
_ACTOR_BREAKER_SCOPES = ("type", "id", "both")


def parse_resiliency(documents: Iterable[Mapping[str, Any]], app_id: str) -> Resiliency:
    """The policies of the ``kind: Resiliency`` documents scoped to ``app_id``, later ones
    overriding earlier ones by name."""
    return load_resiliency((resources.Resiliency(document) for document in documents), app_id)


def load_resiliency(found: Iterable[resources.Resiliency], app_id: str) -> Resiliency:
    """As ``parse_resiliency``, from the resources folders' documents, whose files daprd's
    log lines name."""
    decoded: list[tuple[resources.Resiliency, Decoded]] = []
    for document in found:
        if document.raw.get("kind") != "Resiliency":
            continue
        try:
            decoded.append((document, decode_struct(document.raw)))
        except StructError as exc:
            logger.error("Could not parse resiliency file %s: %s", document.file, exc)
    loader = _Loader()
    for document, resource in decoded:
        if resource.scopes and app_id not in resource.scopes:
            continue
        if not document.first:
            # LoadLocalResiliency decodes a file with yaml.Unmarshal, which reads its first
            # document only, silently; the sidecar does the same but says so.
            logger.warning(
                "resiliency %s is not the first document of %s and is not loaded: a "
                "resiliency file holds one document (put each Resiliency in a file of its own)",
                resource.name,
                document.file,
            )
            continue
        logger.info("Loading Resiliency configuration: %s", resource.name)
        for path in resource.ignored:
            logger.warning(
                "resiliency %s: daprd's Resiliency type has no field %s; it is ignored",
                resource.name,
                path,
            )
        try:
            loader.load(resource.name, resource.spec)
        except ValueError as exc:
            logger.error("Could not read resiliency policy %s: %s", resource.name, exc)
    return loader.result()


class _Loader:
    """daprd's Resiliency being filled by DecodeConfiguration, document after document."""

    def __init__(self) -> None:
        self.retries: dict[str, RetryPolicy] = {}
        self.timeouts: dict[str, float] = {}
        self.breakers: dict[str, BreakerSpec] = {}
        self.components: dict[str, dict[str, str]] = {}
        self.apps: dict[str, dict[str, str]] = {}
        self.outbound: dict[str, dict[str, str]] = {}

    def load(self, name: str, spec: Mapping[str, Any]) -> None:
        """decodePolicies then decodeTargets; ValueError (daprd's text) at the first bad value,
        everything before it applied."""
        policies = spec.get("policies") or {}
        for policy_name, value in sorted((policies.get("timeouts") or {}).items()):
            text = value or ""
            try:
                self.timeouts[policy_name] = _duration(text)
            except ValueError as exc:
                # Go assigns both results of parseDuration: the name keeps a zero timeout.
                self.timeouts[policy_name] = 0.0
                raise ValueError(
                    f"invalid duration {go_quote(policy_name)}, {text}: {exc}"
                ) from None
        for policy_name, retry_spec in sorted((policies.get("retries") or {}).items()):
            self._retry(policy_name, retry_spec or {})
        for policy_name, breaker_spec in sorted((policies.get("circuitBreakers") or {}).items()):
            self.breakers[policy_name] = _breaker(policy_name, breaker_spec or {})
        self._targets(name, spec.get("targets") or {})

    def _retry(self, name: str, spec: Mapping[str, Any]) -> None:
        retry = _retry_policy(name, spec)
        if name in PROTECTED_RETRY_NAMES:
            logger.warning(
                "Attempted to override protected policy %s which is not allowed. Ignoring "
                "provided policy and using default.",
                name,
            )
            return
        if name in BUILT_IN_RETRY_NAMES and retry.max_retries < 3:
            logger.warning(
                "Attempted override of %s did not meet minimum retry count, resetting to 3.", name
            )
            retry = replace(retry, max_retries=3)
        matching = spec.get("matching")
        if matching is not None:
            retry = replace(
                retry,
                http_codes=_code_ranges(matching.get("httpStatusCodes") or "", HTTP_CODES),
                grpc_codes=_code_ranges(matching.get("gRPCStatusCodes") or "", GRPC_CODES),
            )
        self.retries[name] = retry

    def _targets(self, name: str, targets: Mapping[str, Any]) -> None:
        for app, target in sorted((targets.get("apps") or {}).items()):
            target = target or {}
            self.apps[app] = _names(target)
            if (target.get("circuitBreakerCacheSize") or 0) < 0:
                raise ValueError("must provide a positive size")  # hashicorp/golang-lru
        actors = targets.get("actors") or {}
        if actors:
            logger.warning("resiliency %s: targets.actors is not supported and ignored", name)
        for _, target in sorted(actors.items()):
            target = target or {}
            scope, breaker = target.get("circuitBreakerScope") or "", target.get("circuitBreaker")
            if breaker and not scope:
                raise ValueError("actor circuit breakers must include scope")
            if breaker and scope not in _ACTOR_BREAKER_SCOPES:
                raise ValueError(f"unknown circuit breaker scope {go_quote(scope)}")
            if (target.get("circuitBreakerCacheSize") or 0) < 0:
                raise ValueError("must provide a positive size")
        # A named component takes its names for both directions from this target, whatever
        # it leaves out, and the default policies apply to neither: daprd's decodeTargets
        # stores both, and ComponentOutboundPolicy/ComponentInboundPolicy fall back to the
        # defaults only for a component absent from its map.
        for component, target in sorted((targets.get("components") or {}).items()):
            self.components[component] = _names((target or {}).get("inbound"))
            self.outbound[component] = _names((target or {}).get("outbound"))

    def result(self) -> Resiliency:
        """The merged policies. A component's circuit breaker named but defined nowhere is
        refused (ResiliencyError): daprd builds that breaker from a nil template and crashes at
        the component's first call. Any other undefined name is no policy, as in daprd, which
        is silent about it; a warning here names a likely typo."""
        targets = [(f"component {c!r} inbound", n) for c, n in self.components.items()]
        targets += [(f"component {c!r} outbound", n) for c, n in self.outbound.items()]
        for target, names in targets:
            if names["circuitBreaker"] and names["circuitBreaker"] not in self.breakers:
                raise ResiliencyError(
                    f"{target} circuitBreaker policy {names['circuitBreaker']!r} is not defined "
                    "under spec.policies.circuitBreakers"
                )
        targets += [(f"app {a!r}", n) for a, n in self.apps.items()]
        known = {
            "retry": {*self.retries, *BUILT_IN_RETRY_NAMES},
            "timeout": self.timeouts,
            "circuitBreaker": self.breakers,
        }
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
            retries=self.retries,
            timeouts=self.timeouts,
            breakers=self.breakers,
            components=self.components,
            apps=self.apps,
            outbound=self.outbound,
        )


def _duration(text: str) -> float:
    """daprd's parseDuration (and dapr/kit's for time.Duration fields): a bare integer is
    milliseconds, anything else a Go duration."""
    if _GO_INT.fullmatch(text):
        return int(text) / 1000
    return time_parse_duration(text)


def _kit_duration(key: str, text: str, errors: list[str]) -> float | None:
    """A time.Duration field as dapr/kit's config.Decode reads it; its error joins ``errors``
    in mapstructure's words."""
    try:
        return _duration(text)
    except ValueError:
        errors.append(f"error decoding '{key}': invalid duration {go_quote(text)}")
        return None


def _decode_failed(name: str, errors: list[str]) -> ValueError:
    """decodePolicies' error for a retry policy or circuit breaker (both say "retry") over
    mapstructure's list of field errors."""
    points = "\n".join(sorted(f"* {error}" for error in errors))
    return ValueError(
        f"invalid retry configuration {go_quote(name)}: "
        f"{len(errors)} error(s) decoding:\n\n{points}"
    )


def _retry_policy(name: str, spec: Mapping[str, Any]) -> RetryPolicy:
    """dapr/kit's retry.DecodeConfig over DefaultConfig, from the fields daprd's type keeps."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    policy = spec.get("policy") or ""
    if policy.lower() in ("constant", "exponential"):
        values["policy"] = policy.lower()
    elif policy:
        errors.append(
            f"error decoding 'policy': invalid PolicyType {go_quote(policy)}: "
            f"unexpected back off policy type: {policy}"
        )
    for key, attr in (("duration", "duration"), ("maxInterval", "max_interval")):
        if spec.get(key):
            values[attr] = _kit_duration(key, spec[key], errors)
    if spec.get("maxRetries") is not None:
        values["max_retries"] = spec["maxRetries"]
    if errors:
        raise _decode_failed(name, errors)
    return RetryPolicy(**values)


def _breaker(name: str, spec: Mapping[str, Any]) -> BreakerSpec:
    """A circuit breaker as dapr/kit's config.Decode fills daprd's breaker.CircuitBreaker."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    max_requests = spec.get("maxRequests") or 0
    if max_requests < 0:  # a uint32, decoded from the float64 encoding/json gave
        errors.append(f"cannot parse 'maxRequests', {float(max_requests):f} overflows uint")
    values["max_requests"] = max_requests & 0xFFFFFFFF
    for key in ("interval", "timeout"):
        if spec.get(key):
            values[key] = _kit_duration(key, spec[key], errors)
    if spec.get("trip"):
        try:
            values.update(trip=spec["trip"], program=compile_trip(spec["trip"]))
        except ValueError as exc:
            errors.append(f"error decoding 'trip': invalid Expr {go_quote(spec['trip'])}: {exc}")
    if errors:
        raise _decode_failed(name, errors)
    return BreakerSpec(name=name, **values)


def _code_ranges(patterns: str, valid: tuple[int, int]) -> tuple[tuple[int, int], ...] | None:
    """daprd's parsePatterns: ``"500-599,429"``; an empty string matches every code, a list
    of empty patterns none."""
    if not patterns:
        return None
    ranges = []
    for pattern in patterns.split(","):
        if not pattern:
            continue
        bounds = pattern.split("-")
        if len(bounds) > 2:
            raise ValueError(f"invalid pattern {pattern}, more than one '-' exists")
        start = _status_code(bounds[0], "start", pattern)
        if not valid[0] <= start <= valid[1]:
            raise ValueError(f"invalid pattern {pattern}, start code {start} is not valid")
        end = _status_code(bounds[1], "end", pattern) if len(bounds) == 2 else start
        if not valid[0] <= end <= valid[1]:
            raise ValueError(f"invalid pattern {pattern}, end code {end} is not valid")
        if end < start:
            raise ValueError(
                f"invalid pattern {pattern}, start value should not bigger than end value"
            )
        ranges.append((start, end))
    return tuple(ranges)


def _status_code(text: str, which: str, pattern: str) -> int:
    """strconv.Atoi, with compilePattern's wording of its error."""
    if _GO_INT.fullmatch(text) and -(2**63) <= int(text) < 2**63:
        return int(text)
    why = "invalid syntax" if not _GO_INT.fullmatch(text) else "value out of range"
    raise ValueError(
        f"failed to parse {which} code {text} from pattern {pattern} to int, "
        f"strconv.Atoi: parsing {go_quote(text)}: {why}"
    )


def _names(target: Mapping[str, Any] | None) -> dict[str, str]:
    """The policy names a target refers to."""
    target = target or {}
    return {kind: target.get(kind) or "" for kind in ("retry", "timeout", "circuitBreaker")}
