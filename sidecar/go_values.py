"""A JSON value saved through daprd's HTTP state API, as its state store writes it.

daprd decodes the request body with Go's encoding/json, so a value becomes Go's ``any``: every
number a float64. The store marshals that value again: contrib's ``state.redis`` with
json-iterator's ConfigFastest (at most six decimals below 0x4ffffff, no HTML escaping, map keys
in Go's random order), the other stores with encoding/json (keys sorted; ``<``, ``>``, ``&``,
U+2028 and U+2029 escaped). A client reads back what that round trip made of its value: under
daprd on Redis, 3.14159265358979 reads back 3.141593, and 9007199254740993 reads back
9007199254740992 everywhere. gRPC values are bytes and are stored as sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from sidecar import go_scanner
from sidecar.go_marshal import OutOfRange
from sidecar.gofmt import json_float

#: A JSON value as Go's json.Marshal writes it, and as json-iterator's ConfigFastest does.
Marshal = Callable[[Any], bytes]

_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: encoding/json (Go 1.22 and later) also writes these two as short escapes.
_STD_ESCAPES = {**_SHORT_ESCAPES, "\b": "\\b", "\f": "\\f"}
_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
_LINE_ESCAPES = {"\u2028": "\\u2028", "\u2029": "\\u2029"}


def _escape_table(short: dict[str, str], extra: dict[str, str]) -> dict[int, str]:
    table = {code: f"\\u{code:04x}" for code in range(0x20)}
    table.update({ord(c): text for c, text in short.items()})
    table.update({ord(c): text for c, text in extra.items()})
    return table


_STD_TABLE = _escape_table(_STD_ESCAPES, {**_HTML_ESCAPES, **_LINE_ESCAPES})
_FASTEST_TABLE = _escape_table(_SHORT_ESCAPES, {})


class _NegativeZero(int):
    """The literal ``-0``: an int 0 where Go decodes an int, -0.0 where it decodes a float64
    (which encoding/json writes ``-0``); Python's parser would lose the sign."""


_NEGATIVE_ZERO = _NegativeZero(0)


def state_number(literal: str) -> Any:
    """How a state body's numbers are read (a json.loads hook): as Python reads them, but for
    ``-0``, whose sign a value decoded into ``any`` keeps."""
    if literal == "-0":
        return _NEGATIVE_ZERO
    if literal.lstrip("-").isdigit():
        return int(literal)
    return float(literal)


def go_float(number: float, where: str, literal: Callable[[], str]) -> float:
    """``number`` as the float64 Go decodes it into ``any``; OutOfRange worded as Go's error.

    ``where`` is Go's "struct field X.y" context; ``literal`` gives the number's text as sent.
    """
    if isinstance(number, _NegativeZero):
        return -0.0
    try:
        value = float(number)
    except OverflowError:  # an integer too long for a float
        value = math.inf
    if math.isinf(value) or math.isnan(value):
        raise OutOfRange(literal(), where)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_go(value: Any, where: str, literal: Callable[[], str]) -> Any:
    """``value`` (freshly parsed JSON, changed in place) with every number a float, as Go
    decodes it into ``any``. Without recursion: it may be nested as deep as the parser allowed.
    """
    if _is_number(value):
        return go_float(value, where, literal)
    todo: list[Any] = [value]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            for key, child in node.items():  # replacing values does not disturb the loop
                if _is_number(child):
                    node[key] = go_float(child, where, literal)
                elif isinstance(child, dict | list):
                    todo.append(child)
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if _is_number(child):
                    node[index] = go_float(child, where, literal)
                elif isinstance(child, dict | list):
                    todo.append(child)
    return value


def first_out_of_range(raw: bytes | str) -> str:
    """The text of the first number in a document's first JSON value that a float64 cannot
    hold (the document is one Go's decoder accepted)."""
    found: list[str] = []

    def number(text: str) -> float:
        value = float(text)
        if math.isinf(value) and not found:
            found.append(text)
        return value

    data = raw if isinstance(raw, bytes) else raw.encode()
    first = go_scanner.scan(data, whole=False).end or len(data)  # a Decoder reads no further
    json.loads(data[:first].decode("utf-8", "replace"), parse_float=number, parse_int=number)
    return found[0] if found else "?"


def _lossy_float(value: float) -> str:
    """json-iterator's WriteFloat64Lossy: six decimals at most, rounded half up."""
    sign = ""
    if value < 0:
        sign, value = "-", -value
    if value > 0x4FFFFFF:
        return sign + json_float(value)
    scaled = int(value * 1_000_000.0 + 0.5)
    whole, fraction = divmod(scaled, 1_000_000)
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:06d}".rstrip("0")


def _scalar(value: Any, table: dict[int, str], std: bool) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return f'"{value.translate(table)}"'
    number = float(value)  # an int too: Go decoded every number into a float64
    return json_float(number) if std else _lossy_float(number)


def _dump(value: Any, table: dict[int, str], std: bool) -> bytes:
    """Without recursion, like ``as_go``."""
    out: list[str] = []
    #: Per open container: its (key, value) entries still to write, its closing bracket, and
    #: whether the next entry is its first.
    stack: list[tuple[Iterator[tuple[str | None, Any]], str, list[bool]]] = [
        (iter([(None, value)]), "", [True])
    ]
    while stack:
        entries, closer, first = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            out.append(closer)
            continue
        if not first[0]:
            out.append(",")
        first[0] = False
        key, item = entry
        if key is not None:
            out.append(f'"{key.translate(table)}":')
        if isinstance(item, dict):
            out.append("{")
            keys = sorted(item) if std else list(item)
            stack.append((iter([(k, item[k]) for k in keys]), "}", [True]))
        elif isinstance(item, list):
            out.append("[")
            stack.append((iter([(None, x) for x in item]), "]", [True]))
        else:
            out.append(_scalar(item, table, std))
    return "".join(out).encode()


def encoding_json(value: Any) -> bytes:
    """Go's json.Marshal of a decoded value (numbers already floats: see ``as_go``)."""
    return _dump(value, _STD_TABLE, std=True)


def jsoniter_fastest(value: Any) -> bytes:
    """json-iterator's ConfigFastest.Marshal of a decoded value (map keys in their order here;
    Go's is random)."""
    return _dump(value, _FASTEST_TABLE, std=False)
