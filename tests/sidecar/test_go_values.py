"""What a state store writes for a value daprd decoded from an HTTP body.

The expected texts were produced by Go itself (go_values_vectors.go, next to this file): each
input decoded with encoding/json into ``any``, then marshalled with encoding/json and with
json-iterator 1.1.12's ConfigFastest (contrib's state.redis), as daprd 1.18 and contrib 1.18
do. Go 1.22 and later write ``\\b`` and ``\\f`` as short escapes (daprd 1.18 is built with
Go 1.26).
"""

from __future__ import annotations

from typing import Any

import pytest

from sidecar import go_values
from sidecar.go_marshal import OutOfRange
from sidecar.json_reader import fast_loads, loads

#: (JSON sent, encoding/json's text, json-iterator ConfigFastest's text)
VECTORS = [
    ("3.14159265358979", "3.14159265358979", "3.141593"),
    ("0.1234565", "0.1234565", "0.123457"),
    ("0.1234575", "0.1234575", "0.123458"),
    ("1", "1", "1"),
    ("0", "0", "0"),
    ("-1.5", "-1.5", "-1.5"),
    ("1.0", "1", "1"),
    ("100", "100", "100"),
    ("83886079", "83886079", "83886079"),
    ("83886080", "83886080", "83886080"),
    ("83886081.5", "83886081.5", "83886081.5"),
    ("123456789.123", "123456789.123", "123456789.123"),
    ("9007199254740993", "9007199254740992", "9007199254740992"),
    ("12345678901234567890", "12345678901234567000", "12345678901234567000"),
    ("1e21", "1e+21", "1e+21"),
    ("1e20", "100000000000000000000", "100000000000000000000"),
    ("999999999999999999999", "1e+21", "1e+21"),
    ("1e-6", "0.000001", "0.000001"),
    ("1e-7", "1e-7", "0"),
    ("0.0000001234", "1.234e-7", "0"),
    ("1.5e-7", "1.5e-7", "0"),
    ("1e-100", "1e-100", "0"),
    ("1e308", "1e+308", "1e+308"),
    ("0.0000004", "4e-7", "0"),
    ("-0.0000004", "-4e-7", "-0"),
    ("0.0000005", "5e-7", "0.000001"),
    ("0.0000015", "0.0000015", "0.000002"),
    ("2.5e-320", "2.5e-320", "0"),
    ("0.30000000000000004", "0.30000000000000004", "0.3"),
    ('"a<b>&c"', '"a\\u003cb\\u003e\\u0026c"', '"a<b>&c"'),
    (
        '"tab\\there\\nnl\\r\\u0001\\u001f\\u007f"',
        '"tab\\there\\nnl\\r\\u0001\\u001f\x7f"',
        '"tab\\there\\nnl\\r\\u0001\\u001f\x7f"',
    ),
    ('"\\b\\f"', '"\\b\\f"', '"\\u0008\\u000c"'),
    ('"\\u2028\\u2029"', '"\\u2028\\u2029"', '"\u2028\u2029"'),
    ('"é漢字😀"', '"é漢字😀"', '"é漢字😀"'),
    ('"quote\\"back\\\\slash"', '"quote\\"back\\\\slash"', '"quote\\"back\\\\slash"'),
    ('"\\ud800"', '"\ufffd"', '"\ufffd"'),
    ('[1,2.5,"x",null,true,false]', '[1,2.5,"x",null,true,false]', '[1,2.5,"x",null,true,false]'),
    (
        '{"<k>":[{"d":0.1234567}]}',
        '{"\\u003ck\\u003e":[{"d":0.1234567}]}',
        '{"<k>":[{"d":0.123457}]}',
    ),
    ("{}", "{}", "{}"),
    ("[]", "[]", "[]"),
    ("null", "null", "null"),
    ("true", "true", "true"),
]


def decoded(text: str) -> Any:
    return go_values.as_go(fast_loads(text.encode()), "value", lambda: "?")


@pytest.mark.parametrize(("sent", "std", "fastest"), VECTORS)
def test_values_are_written_as_go_writes_them(sent: str, std: str, fastest: str) -> None:
    value = decoded(sent)
    assert go_values.encoding_json(value).decode() == std
    assert go_values.jsoniter_fastest(value).decode() == fastest


@pytest.mark.parametrize(
    ("sent", "std", "fastest"),
    [("-0", "-0", "0"), ("[-0,0,-0.0,1,1.5,-0e0]", "[-0,0,-0,1,1.5,-0]", "[0,0,0,1,1.5,0]")],
)
def test_a_negative_zero_keeps_its_sign_where_go_writes_it(
    sent: str, std: str, fastest: str
) -> None:
    """Python's parser reads ``-0`` as the int 0; the state bodies' reader keeps the sign."""
    value = go_values.as_go(loads(sent, go_values.state_number), "value", lambda: "?")
    assert go_values.encoding_json(value).decode() == std
    assert go_values.jsoniter_fastest(value).decode() == fastest


def test_encoding_json_sorts_keys_and_json_iterator_keeps_them() -> None:
    value = decoded('{"b":1,"a":{"é":2,"Z":3},"":0}')
    assert go_values.encoding_json(value) == b'{"":0,"a":{"Z":3,"\xc3\xa9":2},"b":1}'
    # Go's map order is random: any order is one it could have written.
    assert go_values.jsoniter_fastest(value) == b'{"b":1,"a":{"\xc3\xa9":2,"Z":3},"":0}'


def test_deeply_nested_values_are_written_without_recursion() -> None:
    depth = 5000  # deeper than Python's recursion limit: a recursive writer would fail
    value: Any = 1.5
    for _ in range(depth):
        value = [value]
    value = go_values.as_go(value, "value", lambda: "?")
    expected = ("[" * depth + "1.5" + "]" * depth).encode()
    assert go_values.encoding_json(value) == expected
    assert go_values.jsoniter_fastest(value) == expected


@pytest.mark.parametrize(
    ("sent", "literal"),
    [
        ('{"v":[1,1e400]}', "1e400"),
        ("[-1E+999, 2e999]", "-1E+999"),
        ("1" + "0" * 400, "1" + "0" * 400),
    ],
)
def test_a_number_no_float64_holds_is_refused_with_its_text(sent: str, literal: str) -> None:
    with pytest.raises(OutOfRange) as caught:
        go_values.as_go(
            fast_loads(sent.encode()),
            "struct field SetRequest.value",
            lambda: go_values.first_out_of_range(sent),
        )
    assert str(caught.value) == (
        f"json: cannot unmarshal number {literal} into Go struct field SetRequest.value "
        "of type float64"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "invalid character 'N' looking for beginning of value"),
        ('{"a": [Infinity]}', "invalid character 'I' looking for beginning of value"),
        ('{"a": -Infinity}', "invalid character 'I' in numeric literal"),
    ],
)
def test_nan_and_infinity_are_not_json(text: str, message: str) -> None:
    for parse in (loads, fast_loads):
        with pytest.raises(ValueError, match=f"^{message}$"):
            parse(text.encode())
