"""JSON as daprd's encoding/json writes the maps it builds: published CloudEvents, the outbox's
events, and the wrappers and bulk envelopes it posts to apps.

json.Marshal of a Go map sorts its keys (by their UTF-8 bytes), escapes ``<``, ``>``, ``&``,
U+2028 and U+2029 in every string, and writes each number as it was decoded: contrib's
unmarshalPrecise (``UseNumber``) keeps a number's text (``10.10`` stays ``10.10``), a plain
json.Unmarshal makes it a float64, which Go writes in its own form (``1.0`` becomes ``1``,
``1e21`` becomes ``1e+21``). orjson writes everything else as Go does, so the readers here carry
numbers as orjson Fragments holding the text Go would write.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from sidecar.gofmt import json_float
from sidecar.json_walk import replaced

#: A reader's hook for each number's text (json.loads' parse_int and parse_float).
Numbers = Callable[[str], Any]

_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
#: A JSON string, or a run of the whitespace json.Compact removes outside strings.
_STRING_OR_SPACE = re.compile(rb'"(?:[^"\\]|\\.)*"|[ \t\r\n]+', re.S)
_SPACES = (b" ", b"\t", b"\r", b"\n")
#: Integers of this many digits or fewer are exact in a float64 and written as they are.
_EXACT_DIGITS = 15
_I64, _U64 = -(2**63), 2**64  #: the integers orjson writes


def _each_byte(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return "\ufffd" * (error.end - error.start), error.end


codecs.register_error("go-utf8", _each_byte)


def go_string(data: bytes) -> str:
    """Bytes as Go reads them into a string it marshals, or as its JSON decoder reads text:
    each byte that is not part of valid UTF-8 becomes one U+FFFD (utf8.DecodeRune's width 1),
    where Python's "replace" makes one of a truncated sequence."""
    return data.decode("utf-8", "go-utf8")


class OutOfRange(ValueError):
    """A number no float64 holds, which Go's decoder refuses; ``where`` is its context in Go's
    UnmarshalTypeError ("value", or "struct field X.y")."""

    def __init__(self, literal: str, where: str = "value") -> None:
        self.literal = literal
        super().__init__(f"json: cannot unmarshal number {literal} into Go {where} of type float64")


def as_text(literal: str) -> orjson.Fragment:
    """A number as a ``json.Number`` (UseNumber): written again exactly as it was sent."""
    return orjson.Fragment(literal)


def as_float64(literal: str) -> orjson.Fragment:
    """A number as a float64 that json.Marshal writes again; OutOfRange past float64's range."""
    digits = len(literal) - literal.startswith("-")
    if digits <= _EXACT_DIGITS and literal.lstrip("-").isdigit():
        return orjson.Fragment(literal)  # "-0" too: Go keeps the float's sign
    value = float(literal)
    if math.isinf(value):
        raise OutOfRange(literal)
    return orjson.Fragment(json_float(value))


def marshal(value: Any, *, sort_keys: bool = True) -> bytes:
    """json.Marshal of ``value``; ``sort_keys`` False for a Go struct, whose fields keep the
    order they are given in here (its maps then need marshalling on their own)."""
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        out = orjson.dumps(value, option=option)
    except TypeError:
        # An integer beyond 64 bits (orjson refuses them) that no reader here made.
        out = orjson.dumps(replaced(value, _big_int_as_text), option=option)
    return escape_html(out)


def encoded(value: Any, *, sort_keys: bool = True) -> bytes:
    """What daprd's json.NewEncoder(w).Encode writes (its respondWithJSON): ``marshal`` and a
    newline."""
    return marshal(value, sort_keys=sort_keys) + b"\n"


def _big_int_as_text(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not _I64 <= value < _U64:
        return orjson.Fragment(str(value))
    return value


def escape_html(out: bytes) -> bytes:
    """Go's HTML-safe escapes over JSON text: those characters only occur inside its strings."""
    for raw, escaped in _ESCAPES:
        if raw in out:
            out = out.replace(raw, escaped)
    return out


def compact(data: bytes) -> bytes:
    """Go's json.Compact with HTML escaping, as json.Marshal writes a json.RawMessage: the
    whitespace between tokens removed, strings as they are but for the HTML-safe escapes
    (``data`` is JSON: Go's scanner accepts it)."""
    if any(space in data for space in _SPACES):
        data = _STRING_OR_SPACE.sub(_keep_strings, data)
    return escape_html(data)


def _keep_strings(match: re.Match[bytes]) -> bytes:
    found = match.group()
    return found if found.startswith(b'"') else b""
