"""How Go's ``fmt`` prints values that Go's ``encoding/json`` decoded (numbers are float64).

Components that turn such values into strings (query parameters, secrets files) print them
this way, so the same input gives the same strings as under daprd.
"""

from __future__ import annotations

import math
from decimal import Decimal


def go_format(value: object) -> str:
    """``fmt.Sprintf("%v", v)`` of a value Go decoded from JSON (numbers are float64)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _go_float(float(value))
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value))
        return f"map[{inner}]"
    return str(value)


def _shortest(number: float) -> tuple[str, Decimal, str, int]:
    """Sign, the shortest decimal that reads back as ``abs(number)``, its digits and the
    power of ten of its first digit (Go's strconv with precision -1 finds the same)."""
    shortest = Decimal(repr(abs(number))).normalize()
    parts = shortest.as_tuple()
    digits = "".join(str(d) for d in parts.digits)
    return ("-" if number < 0 else ""), shortest, digits, len(digits) - 1 + int(parts.exponent)


def _exponent_form(sign: str, digits: str, exponent: int) -> str:
    """strconv's 'e' format: d.ddde+XX, at least two exponent digits."""
    body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{body}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _go_float(number: float) -> str:
    """Go's %v for float64: shortest digits, exponent form when exp < -4 or exp >= 6."""
    if number == 0:
        return "0"
    sign, shortest, digits, exponent = _shortest(number)
    if exponent < -4 or exponent >= 6:
        return _exponent_form(sign, digits, exponent)
    return sign + format(shortest, "f")


def json_float(number: float) -> str:
    """A float64 as encoding/json writes it: shortest digits, positional from 1e-6 to below
    1e21, else exponent form with a two-digit negative exponent shortened (1e-07: 1e-7)."""
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    sign, shortest, digits, exponent = _shortest(number)
    if 1e-6 <= abs(number) < 1e21:
        return sign + format(shortest, "f")
    return _exponent_form(sign, digits, exponent).replace("e-0", "e-")


def go_sprint_s(value: object) -> str:
    """``fmt.Sprintf("%s", v)``: strings as they are; other values as Go marks a wrong verb."""
    if isinstance(value, str):
        return value
    if value is None:
        return "%!s(<nil>)"
    kind = "bool" if isinstance(value, bool) else "float64"
    return f"%!s({kind}={go_format(value)})"


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """``fmt.Sprintf("%q", s)`` (strconv.Quote): printable text as it is, the rest escaped."""
    out = []
    for char in text:
        code = ord(char)
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'
