"""JSON read as daprd's Go code reads it: encoding/json's syntax errors and limits, invalid
UTF-8 and lone surrogate escapes as U+FFFD, and numbers as each reader in daprd decodes them.

Syntax errors are found by ``sidecar.go_scanner`` once Python's parser has failed, so the usual
path is the C parser (or orjson) alone.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from sidecar import go_scanner
from sidecar.go_marshal import Numbers, OutOfRange, go_string

#: The escape of a UTF-16 surrogate in JSON text (paired or not: the parse tells).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(data: bytes | str, numbers: Numbers | None = None) -> Any:
    """Parse JSON as json.Unmarshal does in daprd (integers are exact ints unless ``numbers``).

    Text that is not UTF-8, and escapes of unpaired UTF-16 surrogates (``"\\ud800"``, which
    Python's parser would keep), become U+FFFD, as Go reads them; what is parsed can always be
    written out again as UTF-8. JSON nested deeper than Python's recursion limit is a ValueError
    like any other bad JSON (Go's decoder also refuses it: "exceeded max depth"), and so are
    NaN, Infinity and -Infinity, which Python would read. Syntax errors are json.Unmarshal's
    (``sidecar.go_scanner``). ``numbers`` (``go_marshal.as_text`` or ``as_float64``) makes each
    number what json.Marshal writes again; a number it refuses is an error only once the whole
    text is known to be JSON, as Go checks the syntax first.
    """
    try:
        return _parse(data, numbers)
    except json.JSONDecodeError as exc:
        raw = _raw(data)
        raise ValueError(go_scanner.scan(raw, whole=True).error or str(exc)) from None
    except OutOfRange:
        _raise_syntax_error(_raw(data), whole=True)
        raise


def _raw(data: bytes | str) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")


def _raise_syntax_error(raw: bytes, *, whole: bool) -> None:
    found = go_scanner.scan(raw, whole=whole)
    if found.error:
        raise ValueError(found.error) from None


def _parse(data: bytes | str, numbers: Numbers | None = None) -> Any:
    """``loads`` with Python's json.JSONDecodeError left as it is for syntax errors."""
    if isinstance(data, str):
        text, decoded = data, _LONE_SURROGATE.search(data) is not None
    else:
        # "replace" never yields a surrogate, so only an escape can bring one in.
        text, decoded = go_string(data), False
    try:
        if numbers is None:
            value = json.loads(text, parse_constant=_refuse_constant)
        else:
            value = json.loads(
                text, parse_constant=_refuse_constant, parse_int=numbers, parse_float=numbers
            )
    except RecursionError:
        raise ValueError("JSON exceeded max depth") from None
    if decoded or _SURROGATE_ESCAPE.search(text):
        value = _mend_surrogates(value)
    return value


def _refuse_constant(name: str) -> Any:
    """Python reads NaN, Infinity and -Infinity; they are not JSON, and Go stops at them."""
    where = "in numeric literal" if name.startswith("-") else "looking for beginning of value"
    raise ValueError(f"invalid character '{name.lstrip('-')[0]}' {where}")


def go_decode(data: bytes, numbers: Numbers | None = None) -> Any:
    """The first JSON value of ``data`` as one Decode of a json.Decoder reads it (the rest is
    never read); ValueError with Go's message ("EOF" when there is none). ``numbers`` as in
    ``loads``."""
    try:
        return _parse(data, numbers)
    except json.JSONDecodeError:
        found = go_scanner.scan(data, whole=False)
        if found.error:
            raise ValueError(found.error) from None
    except OutOfRange:
        _raise_syntax_error(data, whole=False)
        raise
    return _parse(data[: found.end], numbers)


def fast_loads(data: bytes) -> Any:
    """``loads``, by orjson when it can: it refuses what Go reads (lone surrogate escapes)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return loads(data)


def read_delivered(data: bytes) -> Any:
    """A delivered message as daprd's json.Unmarshal into a Go map reads it: a number no
    float64 holds makes it unreadable (OutOfRange). Integers may stay ints here; the routing
    rules see every number as a double, as in daprd (``sidecar.routing``)."""
    try:
        return orjson.loads(data)  # it refuses such numbers, NaN and lone surrogate escapes
    except orjson.JSONDecodeError:
        return loads(data, _go_float)


def _go_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise OutOfRange(literal)
    return value


def _mend_surrogates(value: Any) -> Any:
    """``value`` with each unpaired surrogate replaced by U+FFFD; containers mended in place.

    Without recursion: the value may be nested as deep as the parser allowed.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            pairs = list(item.items())
            item.clear()
            for key, child in pairs:
                if isinstance(child, str):
                    child = _LONE_SURROGATE.sub("\ufffd", child)
                elif isinstance(child, dict | list):
                    todo.append(child)
                item[_LONE_SURROGATE.sub("\ufffd", key)] = child
        elif isinstance(item, list):
            for index, child in enumerate(item):
                if isinstance(child, str):
                    item[index] = _LONE_SURROGATE.sub("\ufffd", child)
                elif isinstance(child, dict | list):
                    todo.append(child)
    return value
