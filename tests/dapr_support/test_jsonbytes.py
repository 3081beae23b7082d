"""Compact JSON bytes: orjson where it can, the standard library where it cannot."""

from __future__ import annotations

import json

from dapr_support.jsonbytes import dumps


def test_plain_json_is_compact_utf8() -> None:
    assert dumps({"é": [1.5, None, True], "n": -3}) == '{"é":[1.5,null,true],"n":-3}'.encode()


def test_what_orjson_refuses_is_written_as_the_standard_library_writes_it() -> None:
    big = {"id": 2**64, "neg": -(2**63) - 3}
    assert json.loads(dumps(big)) == big
    assert dumps({1: "one"}) == b'{"1":"one"}'
    assert dumps({"s": "\ud800"}) == b'{"s":"\\ud800"}'
