"""Go's encoding/json scanner: where the first JSON value of a text ends, or Go's syntax error.

daprd reads request bodies, CloudEvents and apps' answers with Go's encoding/json; a client that
sends malformed JSON reads Go's message back ("invalid character '}' after object key",
"unexpected EOF"). Python's parser words its errors otherwise, and its ``raw_decode`` accepts
what Go refuses (NaN, Infinity), so the sidecar asks this scanner, a transcription of
``encoding/json/scanner.go``'s state machine, whenever Python's parse fails.

A ``json.Decoder`` (``whole=False``) reads the first value and leaves the rest unread;
``json.Unmarshal`` (``whole=True``) also refuses anything but spaces after it.
"""

from __future__ import annotations

from dataclasses import dataclass

_SPACE = frozenset(b" \t\r\n")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'bfnrt\\/"')
#: strconv.Quote's short escapes.
_QUOTE_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_QUOTE_ESCAPES |= {0x0B: "\\v", 0x5C: "\\\\"}
#: Go's maxNestingDepth.
MAX_DEPTH = 10_000

#: What a literal expects next after each prefix, and the literal's name.
_LITERALS = {b"t": b"true", b"f": b"false", b"n": b"null"}


@dataclass(frozen=True, slots=True)
class Scan:
    """The outcome: ``end``, the offset just past the first value, or Go's ``error``."""

    end: int = 0
    error: str = ""


def quote_char(byte: int) -> str:
    """encoding/json's quoteChar: the byte as a rune in single quotes, escaped as
    strconv.Quote escapes it (a byte of a UTF-8 sequence reads as its Latin-1 letter)."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    if byte in _QUOTE_ESCAPES:
        return f"'{_QUOTE_ESCAPES[byte]}'"
    char = chr(byte)
    if char.isprintable():
        return f"'{char}'"
    return f"'\\x{byte:02x}'" if byte < 0x80 else f"'\\u{byte:04x}'"


class _Error(Exception):
    pass


class _End(Exception):
    """The text ends inside the value. ``context``: Go's error for a space in that place
    (json.Unmarshal feeds one at the end), when a space there is an error."""

    def __init__(self, context: str = "") -> None:
        super().__init__(context)
        self.context = context


def _invalid(byte: int, context: str) -> _Error:
    return _Error(f"invalid character {quote_char(byte)} {context}")


def scan(data: bytes, *, whole: bool) -> Scan:
    """Scan ``data`` as Go does; see the module's docstring for ``whole``."""
    try:
        end = _first_value(data)
        if end is None:
            return Scan(error="unexpected end of JSON input" if whole else "EOF")
        for byte in data[end:] if whole else b"":  # a Decoder leaves the rest unread
            if byte not in _SPACE:
                raise _invalid(byte, "after top-level value")
        return Scan(end=end)
    except _Error as exc:
        return Scan(error=str(exc))
    except _End as exc:
        if not whole:
            return Scan(error="unexpected EOF")
        if exc.context:
            return Scan(error=f"invalid character ' ' {exc.context}")
        return Scan(error="unexpected end of JSON input")


def _first_value(data: bytes) -> int | None:
    """The offset just past the first value (None: only spaces); _End when the text ends
    inside it, _Error at the first byte Go refuses."""
    pos = 0
    size = len(data)
    while pos < size and data[pos] in _SPACE:
        pos += 1
    if pos == size:
        return None
    #: Open containers, innermost last: b"{" expecting a key, b":" a value, b"[" an element.
    stack: list[bytes] = []
    while True:
        pos = _value(data, pos, stack)
        # After a value: close containers and find where the next value starts.
        while True:
            if not stack:
                return pos
            pos = _skip_space(data, pos)
            byte = data[pos]
            top = stack[-1]
            if top == b"{":  # a key was just read
                if byte != 0x3A:
                    raise _invalid(byte, "after object key")
                stack[-1] = b":"
                pos += 1
                break
            if top == b":":
                if byte == 0x2C:
                    stack[-1] = b"{"
                    pos = _key(data, pos + 1)
                    continue
                if byte == 0x7D:
                    stack.pop()
                    pos += 1
                    continue
                raise _invalid(byte, "after object key:value pair")
            if byte == 0x2C:  # in an array
                pos += 1
                break
            if byte == 0x5D:
                stack.pop()
                pos += 1
                continue
            raise _invalid(byte, "after array element")


def _skip_space(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos] in _SPACE:
        pos += 1
    if pos == len(data):
        raise _End()
    return pos


def _key(data: bytes, pos: int) -> int:
    """A key string (after ``{`` or ``,``); the offset past it."""
    pos = _skip_space(data, pos)
    if data[pos] != 0x22:
        raise _invalid(data[pos], "looking for beginning of object key string")
    return _string(data, pos + 1)


def _value(data: bytes, pos: int, stack: list[bytes]) -> int:
    """A value, or the opening of a container (then its first key or element is read too,
    recursively through the loop in _first_value); the offset past what was read."""
    while True:
        pos = _skip_space(data, pos)
        byte = data[pos]
        if byte == 0x7B:  # {
            if len(stack) >= MAX_DEPTH:
                raise _invalid(byte, "exceeded max depth")
            pos = _skip_space(data, pos + 1)
            if data[pos] == 0x7D:
                return pos + 1
            stack.append(b"{")
            return _key(data, pos)
        if byte == 0x5B:  # [
            if len(stack) >= MAX_DEPTH:
                raise _invalid(byte, "exceeded max depth")
            pos = _skip_space(data, pos + 1)
            if data[pos] == 0x5D:
                return pos + 1
            stack.append(b"[")
            continue
        if byte == 0x22:
            return _string(data, pos + 1)
        if byte == 0x2D or byte in _DIGITS:
            return _number(data, pos, top_level=not stack)
        literal = _LITERALS.get(bytes([byte]))
        if literal is not None:
            return _literal(data, pos, literal)
        raise _invalid(byte, "looking for beginning of value")


def _string(data: bytes, pos: int) -> int:
    """The rest of a string after its opening quote; the offset past the closing one."""
    size = len(data)
    while pos < size:
        byte = data[pos]
        if byte == 0x22:
            return pos + 1
        if byte == 0x5C:
            pos += 1
            if pos == size:
                raise _End("in string escape code")
            if data[pos] == 0x75:  # \u
                for offset in range(1, 5):
                    if pos + offset == size:
                        raise _End("in \\u hexadecimal character escape")
                    if data[pos + offset] not in _HEX:
                        raise _invalid(data[pos + offset], "in \\u hexadecimal character escape")
                pos += 5
                continue
            if data[pos] not in _ESCAPES:
                raise _invalid(data[pos], "in string escape code")
        elif byte < 0x20:
            raise _invalid(byte, "in string literal")
        pos += 1
    raise _End()


def _number(data: bytes, pos: int, *, top_level: bool) -> int:
    """A number; the offset past it. The text may end right after a complete number only at
    the top level."""
    size = len(data)

    def at(index: int) -> int | None:
        return data[index] if index < size else None

    def digits(index: int) -> int:
        while (byte := at(index)) is not None and byte in _DIGITS:
            index += 1
        return index

    def expect_digit(index: int, context: str) -> None:
        byte = at(index)
        if byte is None:
            raise _End(context)
        if byte not in _DIGITS:
            raise _invalid(byte, context)

    if data[pos] == 0x2D:
        pos += 1
        expect_digit(pos, "in numeric literal")
    pos = pos + 1 if data[pos] == 0x30 else digits(pos)
    if at(pos) == 0x2E:  # .
        expect_digit(pos + 1, "after decimal point in numeric literal")
        pos = digits(pos + 1)
    if at(pos) in (0x65, 0x45):  # e E
        pos += 1
        if at(pos) in (0x2B, 0x2D):
            pos += 1
        expect_digit(pos, "in exponent of numeric literal")
        pos = digits(pos)
    if pos == size and not top_level:
        raise _End()
    return pos


def _literal(data: bytes, pos: int, literal: bytes) -> int:
    """true, false or null; the offset past it."""
    name = literal.decode()
    for index in range(1, len(literal)):
        context = f"in literal {name} (expecting '{chr(literal[index])}')"
        if pos + index == len(data):
            raise _End(context)
        if data[pos + index] != literal[index]:
            raise _invalid(data[pos + index], context)
    return pos + len(literal)
