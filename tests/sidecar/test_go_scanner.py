"""Go's encoding/json scanner, transcribed: where the first value ends, and Go's errors.

The expected outcomes were printed by Go (encoding/json): one Decode of a json.Decoder (the
offset it read to, or its error) and json.Unmarshal's error for the whole text. The sidecar
answers malformed bodies with these messages, as daprd does.
"""

from __future__ import annotations

import pytest

from sidecar.go_scanner import MAX_DEPTH, scan

#: (text, a Decoder's end offset or error, Unmarshal's error or None)
CASES: list[tuple[bytes, int | str, str | None]] = [
    (b"", "EOF", "unexpected end of JSON input"),
    (b" \n", "EOF", "unexpected end of JSON input"),
    (b"{}", 2, None),
    (b'{"a":1} x', 7, "invalid character 'x' after top-level value"),
    (b"12x", 2, "invalid character 'x' after top-level value"),
    (b'"s" {', 3, "invalid character '{' after top-level value"),
    (b"[1,2", "unexpected EOF", "unexpected end of JSON input"),
    (b"[1,2,", "unexpected EOF", "unexpected end of JSON input"),
    (b'{"a"', "unexpected EOF", "unexpected end of JSON input"),
    (b'{"a":', "unexpected EOF", "unexpected end of JSON input"),
    (b'{"a":1,', "unexpected EOF", "unexpected end of JSON input"),
    (b"-", "unexpected EOF", "invalid character ' ' in numeric literal"),
    (b"1.", "unexpected EOF", "invalid character ' ' after decimal point in numeric literal"),
    (b"1e+", "unexpected EOF", "invalid character ' ' in exponent of numeric literal"),
    (b"tr", "unexpected EOF", "invalid character ' ' in literal true (expecting 'u')"),
    (b"fals", "unexpected EOF", "invalid character ' ' in literal false (expecting 'e')"),
    (b"nul", "unexpected EOF", "invalid character ' ' in literal null (expecting 'l')"),
    (b"0123", 1, "invalid character '1' after top-level value"),
    (b"-01", 2, "invalid character '1' after top-level value"),
    (b"[]]", 2, "invalid character ']' after top-level value"),
    (b'{"a":1}}', 7, "invalid character '}' after top-level value"),
    (
        b'{"a":"\\u00zz"}',
        "invalid character 'z' in \\u hexadecimal character escape",
        "invalid character 'z' in \\u hexadecimal character escape",
    ),
    (b'"a\\', "unexpected EOF", "invalid character ' ' in string escape code"),
    (b'"\\u12', "unexpected EOF", "invalid character ' ' in \\u hexadecimal character escape"),
    (
        b'"\x1f"',
        "invalid character '\\x1f' in string literal",
        "invalid character '\\x1f' in string literal",
    ),
    (
        b"\x7f",
        "invalid character '\\x7f' looking for beginning of value",
        "invalid character '\\x7f' looking for beginning of value",
    ),
    (
        b"\xc2\xa0",
        "invalid character 'Â' looking for beginning of value",
        "invalid character 'Â' looking for beginning of value",
    ),
    (
        b'{"a" 1}',
        "invalid character '1' after object key",
        "invalid character '1' after object key",
    ),
    (
        b'{"a":1 "b":2}',
        "invalid character '\"' after object key:value pair",
        "invalid character '\"' after object key:value pair",
    ),
    (
        b"[1 2]",
        "invalid character '2' after array element",
        "invalid character '2' after array element",
    ),
    (
        b"{1:2}",
        "invalid character '1' looking for beginning of object key string",
        "invalid character '1' looking for beginning of object key string",
    ),
    (
        b'{"a":NaN}',
        "invalid character 'N' looking for beginning of value",
        "invalid character 'N' looking for beginning of value",
    ),
    (
        b"[-Infinity]",
        "invalid character 'I' in numeric literal",
        "invalid character 'I' in numeric literal",
    ),
    (
        b"'x'",
        "invalid character '\\'' looking for beginning of value",
        "invalid character '\\'' looking for beginning of value",
    ),
    (
        b"\\",
        "invalid character '\\\\' looking for beginning of value",
        "invalid character '\\\\' looking for beginning of value",
    ),
]


@pytest.mark.parametrize(("text", "decoded", "unmarshalled"), CASES)
def test_the_scanner_answers_as_go_does(
    text: bytes, decoded: int | str, unmarshalled: str | None
) -> None:
    first = scan(text, whole=False)
    assert (first.end if isinstance(decoded, int) else first.error) == decoded
    assert (scan(text, whole=True).error or None) == unmarshalled


def test_nesting_deeper_than_go_allows_is_refused_without_recursion() -> None:
    deep = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert scan(deep, whole=True).end == len(deep)
    deeper = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert scan(deeper, whole=True).error == "invalid character '[' exceeded max depth"
