"""A published message's time to live, read as components-contrib's ``metadata.TryGetTTL``
(metadata/utils.go) reads it: a Go duration or a number of seconds."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

#: Go's time.ParseDuration units, in nanoseconds (both micro signs included).
_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_INT64_MAX = (1 << 63) - 1
_DIGITS = re.compile(r"[0-9]*")
_UNIT = re.compile(r"[^0-9.]*")
#: What Go's strconv.ParseInt(s, 10, 64) reads (its range is checked apart).
_GO_INT = re.compile(r"[+-]?[0-9]+")


def _prefix(pattern: re.Pattern[str], text: str) -> str:
    found = pattern.match(text)
    return found.group() if found else ""


def go_parse_duration_ns(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds: one optional sign, then numbers each with a
    unit ("1h30m", "1.5s", "-2ms"), or a bare "0"; no spaces. ValueError otherwise."""
    rest, negative = text, False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0
    while rest:
        whole = _prefix(_DIGITS, rest)
        rest = rest[len(whole) :]
        fraction = ""
        if rest.startswith("."):
            fraction = _prefix(_DIGITS, rest[1:])
            rest = rest[1 + len(fraction) :]
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {text!r}")
        unit_text = _prefix(_UNIT, rest)
        rest = rest[len(unit_text) :]
        unit = _GO_UNITS.get(unit_text)
        if unit is None:
            why = f"unknown unit {unit_text!r}" if unit_text else "missing unit"
            raise ValueError(f"time: {why} in duration {text!r}")
        value = int(whole or "0")
        if value > (1 << 63) // unit:
            raise ValueError(f"time: invalid duration {text!r}")
        value *= unit
        if fraction.strip("0"):
            # Go keeps the fraction's leading digits that fit an int64, scaled in float64.
            digits = fraction[:18]
            value += int(float(int(digits)) * (unit / 10 ** len(digits)))
        total += value
        if total > 1 << 63:
            raise ValueError(f"time: invalid duration {text!r}")
    if negative:
        return -total
    if total > _INT64_MAX:
        raise ValueError(f"time: invalid duration {text!r}")
    return total


def message_ttl(metadata: Mapping[str, str]) -> timedelta | None:
    """The TTL contrib's ApplyMetadata sets an expiration for; None for none.

    ``ttl``, or else ``ttlInSeconds``, either in any case. A Go duration first ("10s", "1m",
    "0"; a negative one is 0: the event has expired when it is delivered), else a whole number
    of seconds above zero (one too large for Go's int64 product is the longest duration).
    TryGetTTL refuses anything else ("ttl value must be a valid integer", "... higher than
    zero"), and ApplyMetadata ignores that error: the publish succeeds without a TTL.
    """
    lowered = {key.lower(): value for key, value in metadata.items()}
    raw = lowered.get("ttl", lowered.get("ttlinseconds", ""))
    if not raw:
        return None
    try:
        nanos = max(go_parse_duration_ns(raw), 0)
    except ValueError:
        if not _GO_INT.fullmatch(raw):
            return None
        seconds = int(raw)
        if seconds <= 0 or seconds > _INT64_MAX:
            return None
        # time.Duration(n) * time.Second wraps in int64; a negative product becomes MaxInt64.
        nanos = (seconds * 1_000_000_000 + (1 << 63)) % (1 << 64) - (1 << 63)
        if nanos < 0:
            nanos = _INT64_MAX
    return timedelta(microseconds=nanos // 1_000)
