"""JSON as daprd writes it again: published events, outbox events and bulk deliveries.

The expected texts were produced by Go itself (go_marshal_vectors.go, next to this file):
json.Marshal of what contrib's unmarshalPrecise decodes (UseNumber: a publish's data keeps its
numbers' text) and of what json.Unmarshal decodes into ``any`` (float64 numbers: the outbox's
relay and bulk deliveries). Go 1.22 and later write ``\\b`` and ``\\f`` as short escapes
(daprd 1.18 is built with Go 1.26). 100,000 random texts, valid and mutated, showed no other
difference.
"""

from __future__ import annotations

import pytest

from sidecar import json_reader
from sidecar.go_marshal import OutOfRange, as_float64, as_text, go_string, marshal

#: (JSON sent, Go's text after unmarshalPrecise, after json.Unmarshal; None: Go refuses it)
VECTORS: list[tuple[bytes, bytes | None, bytes | None]] = [
    (
        b'{"b":1,"a":{"d":[1.0,2],"c":"x"},"\xf0\x90\x80\x80":0,"\xef\xbf\xbf":1,"\xc3\xa9":2}',
        b'{"a":{"c":"x","d":[1.0,2]},"b":1,"\xc3\xa9":2,"\xef\xbf\xbf":1,"\xf0\x90\x80\x80":0}',
        b'{"a":{"c":"x","d":[1,2]},"b":1,"\xc3\xa9":2,"\xef\xbf\xbf":1,"\xf0\x90\x80\x80":0}',
    ),
    (
        b'{"price":10.10,"count":1.0,"big":1e21,"small":0.000001,"tiny":4e-7,"neg":-0,"exp":1E2}',
        b'{"big":1e21,"count":1.0,"exp":1E2,"neg":-0,"price":10.10,"small":0.000001,"tiny":4e-7}',
        b'{"big":1e+21,"count":1,"exp":100,"neg":-0,"price":10.1,"small":0.000001,"tiny":4e-7}',
    ),
    (
        b"[9007199254740993,123456789012345678,12345678901234567890123,3.14159265358979]",
        b"[9007199254740993,123456789012345678,12345678901234567890123,3.14159265358979]",
        b"[9007199254740992,123456789012345680,1.2345678901234568e+22,3.14159265358979]",
    ),
    (
        b'{"html":"<a href=\\"x\\">&</a>","lines":"\\u2028\\u2029",'
        b'"ctl":"\\u0001\\b\\f\\n\\r\\t\\u007f"}',
        b'{"ctl":"\\u0001\\b\\f\\n\\r\\t\x7f",'
        b'"html":"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e","lines":"\\u2028\\u2029"}',
        b'{"ctl":"\\u0001\\b\\f\\n\\r\\t\x7f",'
        b'"html":"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e","lines":"\\u2028\\u2029"}',
    ),
    (b'{"huge":1e400}', b'{"huge":1e400}', None),
    (
        b"[1e-400,5e-324,1.7976931348623157e308]",
        b"[1e-400,5e-324,1.7976931348623157e308]",
        b"[0,5e-324,1.7976931348623157e+308]",
    ),
    (
        b'"\xe2\x80V\xff"',
        b'"\xef\xbf\xbd\xef\xbf\xbdV\xef\xbf\xbd"',
        b'"\xef\xbf\xbd\xef\xbf\xbdV\xef\xbf\xbd"',
    ),
    (b'{"a":1} trailing', b'{"a":1}', None),
]


@pytest.mark.parametrize(("sent", "precise", "plain"), VECTORS)
def test_values_are_written_again_as_go_writes_them(
    sent: bytes, precise: bytes | None, plain: bytes | None
) -> None:
    assert marshal(json_reader.go_decode(sent, as_text)) == precise
    if plain is None:
        with pytest.raises(ValueError):
            json_reader.loads(sent, as_float64)
    else:
        assert marshal(json_reader.loads(sent, as_float64)) == plain


def test_a_number_no_float64_holds_is_worded_as_go_after_the_syntax_is_checked() -> None:
    with pytest.raises(OutOfRange) as caught:
        json_reader.loads(b'{"a":[1,-1e400]}', as_float64)
    assert str(caught.value) == "json: cannot unmarshal number -1e400 into Go value of type float64"
    assert caught.value.literal == "-1e400"
    # Go checks the whole text first: a syntax error after the number is what it reports.
    with pytest.raises(ValueError) as syntax:
        json_reader.loads(b'{"a":1e400,}', as_float64)
    assert str(syntax.value) == "invalid character '}' looking for beginning of object key string"
    # A decoder never reads past its first value, whatever follows.
    with pytest.raises(OutOfRange):
        json_reader.go_decode(b"[1e400] {", as_float64)
    assert marshal(json_reader.go_decode(b"[1] 1e400", as_float64)) == b"[1]"


def test_struct_fields_keep_their_order_and_strings_are_html_safe() -> None:
    value = {"z": "<>", "a": {"y": 1, "b": 2}}
    assert marshal(value, sort_keys=False) == b'{"z":"\\u003c\\u003e","a":{"y":1,"b":2}}'
    assert marshal(value) == b'{"a":{"b":2,"y":1},"z":"\\u003c\\u003e"}'


def test_integers_past_64_bits_are_written_as_their_digits() -> None:
    assert marshal({"n": [2**70, -(2**64)], "m": 2**63}) == (
        b'{"m":9223372036854775808,"n":[1180591620717411303424,-18446744073709551616]}'
    )


def test_bytes_that_are_no_utf8_become_one_replacement_character_each() -> None:
    assert go_string(b"a\xe2\x80b\xed\xa0\x80\xff") == "a\ufffd\ufffdb\ufffd\ufffd\ufffd\ufffd"
    assert go_string("é€😀".encode()) == "é€😀"
