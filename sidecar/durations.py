"""Go's ``time.ParseDuration`` format ("500ms", "1m30s"), which Dapr YAML uses for durations."""

from __future__ import annotations


def parse_go_duration(text: str) -> float:
    """Seconds from a Go duration string (surrounding spaces allowed); ValueError naming the
    expected form otherwise."""
    try:
        return time_parse_duration(text.strip())
    except ValueError:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 500ms, 5s, 1m30s)") from None


def format_go_duration(seconds: float) -> str:
    """How Go prints a duration of whole milliseconds: ``5s``, ``500ms``, ``1.5s``, ``2m0s``,
    and ``0s`` for none."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    minutes, rest = divmod(millis, 60_000)
    hours, minutes = divmod(minutes, 60)
    text = f"{rest / 1000:g}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


#: Go's time.ParseDuration units, in nanoseconds.
_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX = 1 << 63


def _time_quote(text: str) -> str:
    """Go's time.quote: ASCII as it is (``"`` and ``\\`` escaped), other bytes as ``\\xNN``."""
    out = []
    for char in text:
        if " " <= char < "\x80":
            out.append("\\" + char if char in '"\\' else char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return '"' + "".join(out) + '"'


def time_parse_duration(text: str) -> float:
    """Seconds from ``text`` exactly as Go's time.ParseDuration reads it, which, unlike
    ``parse_go_duration``, takes no surrounding spaces; ValueError with Go's message."""
    invalid = ValueError(f"time: invalid duration {_time_quote(text)}")
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise invalid
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            raise invalid
        digits = _leading_digits(rest)
        whole, rest = digits, rest[len(digits) :]
        value = 0
        for char in whole:
            if value > _MAX // 10:
                raise invalid
            value = value * 10 + ord(char) - 48
            if value > _MAX:
                raise invalid
        fraction, scale, fraction_digits = 0, 1.0, ""
        if rest[:1] == ".":
            rest = rest[1:]
            fraction_digits = _leading_digits(rest)
            rest = rest[len(fraction_digits) :]
            fraction, scale = _leading_fraction(fraction_digits)
        if not whole and not fraction_digits:
            raise invalid
        end = 0
        while end < len(rest) and not (rest[end] == "." or "0" <= rest[end] <= "9"):
            end += 1
        if end == 0:
            raise ValueError(f"time: missing unit in duration {_time_quote(text)}")
        unit_name, rest = rest[:end], rest[end:]
        unit = _GO_UNITS.get(unit_name)
        if unit is None:
            quoted = _time_quote(unit_name)
            raise ValueError(f"time: unknown unit {quoted} in duration {_time_quote(text)}")
        if value > _MAX // unit:
            raise invalid
        value *= unit
        if fraction > 0:
            value += int(float(fraction) * (float(unit) / scale))
            if value > _MAX:
                raise invalid
        total += value
        if total > _MAX:
            raise invalid
    if not negative and total > _MAX - 1:
        raise invalid
    return (-total if negative else total) / 1e9


def _leading_digits(text: str) -> str:
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return text[:end]


def _leading_fraction(digits: str) -> tuple[int, float]:
    """Go's leadingFraction: the digits as an integer over ``scale``, precision dropped once
    more would overflow."""
    value, scale = 0, 1.0
    for char in digits:
        if value > (_MAX - 1) // 10:
            break
        following = value * 10 + ord(char) - 48
        if following > _MAX:
            break
        value, scale = following, scale * 10
    return value, scale
