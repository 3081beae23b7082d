"""Finding text that cannot be written as UTF-8 in a parsed JSON body."""

from __future__ import annotations

import json

from dapr_support.text import lone_surrogate_at, unicode_problem


def test_the_path_names_the_string_or_key() -> None:
    assert lone_surrogate_at({"a": [1, "ok", {"b": "x\ud800"}]}, "input") == "input.a[2].b"
    assert lone_surrogate_at({"\udc00": 1}, "body") == "body.\\udc00"  # escaped in the path
    assert lone_surrogate_at({"ok": "\U0001f600", "n": None}, "input") is None
    assert unicode_problem("fine", "x") is None
    problem = unicode_problem(["\udfff"], "x")
    assert problem is not None and problem.startswith("the text at x[0] holds")
    problem.encode()  # the message itself is always valid text


def test_input_as_deep_as_the_parser_takes_is_walked() -> None:
    deep = json.loads('{"k":' * 900 + '"\\ud800"' + "}" * 900)
    assert lone_surrogate_at(deep, "input") == "input" + ".k" * 900
