"""What the state stores share: ttlInSeconds, request options, Go-style durations, RFC 3339
times, etag errors.

Messages follow components-contrib (state/utils/ttl.go, state/request_options.go,
state/errors.go) so errors read like daprd's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from sidecar.components import Component, ComponentError
from sidecar.durations import parse_go_duration
from sidecar.gofmt import go_quote
from sidecar.state.base import Concurrency, Consistency, ETagMismatch, InvalidRequest

TTL_KEY = "ttlInSeconds"
TTL_EXPIRE_TIME = "ttlExpireTime"  #: GetResponse metadata key daprd returns
_MAX_INT32 = 2**31 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+")
_CONCURRENCIES = frozenset(Concurrency)
_CONSISTENCIES = frozenset(Consistency)


def go_atoi(text: str, func: str = "ParseInt") -> int:
    """Parse a Go int (64 bits) like strconv (no spaces or underscores); ValueError with Go's
    message."""
    if not _GO_INT.fullmatch(text):
        raise ValueError(f"strconv.{func}: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"strconv.{func}: parsing {go_quote(text)}: value out of range")
    return value


def parse_ttl(metadata: Mapping[str, str], *, strict: bool = True) -> int | None:
    """The request's ttlInSeconds, None when absent or empty.

    ``strict`` applies contrib's common rule (-1 or greater, at most int32); state.redis
    accepts any integer and treats every value <= 0 as "no expiry".
    """
    raw = metadata.get(TTL_KEY, "")
    if raw == "":
        return None
    try:
        value = go_atoi(raw)
    except ValueError as exc:
        raise InvalidRequest(f"incorrect value for metadata '{TTL_KEY}': {exc}") from None
    if strict and (value < -1 or value > _MAX_INT32):
        raise InvalidRequest(f"incorrect value for metadata '{TTL_KEY}': must be -1 or greater")
    return value


def check_options(concurrency: str, consistency: str) -> None:
    """Contrib's state.CheckRequestOptions for a set or delete: consistency first."""
    if consistency and consistency not in _CONSISTENCIES:
        raise InvalidRequest(f"unrecognized consistency model '{consistency}'")
    if concurrency and concurrency not in _CONCURRENCIES:
        raise InvalidRequest(f"unrecognized concurrency model '{concurrency}'")


def rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339 in UTC, whole seconds (Go's format drops the fraction)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(component: Component, key: str, default: float, alias: str = "") -> float:
    """A duration field in seconds: a Go duration ("30s", "1m30s", "500ms") or plain seconds.

    ``alias`` is contrib's older name for the field (e.g. ``cleanupIntervalInSeconds``).
    """
    if alias and not component.metadata.get(key):
        key = alias
    raw = component.metadata.get(key, "").strip()
    if raw == "":
        return default
    if _GO_INT.fullmatch(raw):
        return float(int(raw))
    sign = -1.0 if raw.startswith("-") else 1.0
    body = raw.lstrip("+-")
    try:
        return sign * parse_go_duration(body)
    except ValueError:
        raise ComponentError(
            component, key, f"expected a duration such as 30s, 5m or 1h, got {raw!r}"
        ) from None


def etag_mismatch(detail: object = "") -> ETagMismatch:
    """Contrib's ETagError(mismatch) text: the prefix, then the store's own error if any."""
    prefix = "possible etag mismatch. error from state store"
    return ETagMismatch(f"{prefix}: {detail}" if str(detail) else prefix)
