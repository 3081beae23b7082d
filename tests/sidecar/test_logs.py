"""The sidecar's log lines in daprd's logrus shape, text and JSON."""

from __future__ import annotations

import json
import logging
import sys

from sidecar.logs import DaprdFormatter


def record(message: str, fields: dict[str, object] | None = None) -> logging.LogRecord:
    made = logging.LogRecord("dapr.runtime", logging.WARNING, __file__, 1, message, None, None)
    if fields is not None:
        made.fields = fields
    return made


def test_text_lines_quote_only_what_logrus_quotes_and_sort_the_fields() -> None:
    line = DaprdFormatter("app-1").format(record("ready", {"useragent": "a b", "code": 200}))
    head, _, rest = line.partition(" level=")
    assert head.startswith('time="') and head.endswith('Z"')
    assert (
        rest
        == 'warning msg=ready app_id=app-1 code=200 scope=dapr.runtime type=log useragent="a b"'
    )


def test_a_traceback_goes_below_its_line_in_text_and_into_error_in_json() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        failed = record("it failed")
        failed.exc_info = sys.exc_info()
    first, *rest = DaprdFormatter("a").format(failed).splitlines()
    assert 'msg="it failed"' in first
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: bad"
    line = json.loads(DaprdFormatter("a", as_json=True).format(failed))
    assert (line["msg"], line["level"], line["type"]) == ("it failed", "warning", "log")
    assert line["error"].endswith("ValueError: bad")


def test_json_lines_are_written_as_gos_encoder_writes_them() -> None:
    """No spaces between tokens, and <, >, &, U+2028 and U+2029 escaped (logrus' default)."""
    line = DaprdFormatter("a", as_json=True).format(record("<b> & \u2028\u2029 é", {"n": 1}))
    assert line.startswith('{"app_id":"a","level":"warning","msg":')
    assert '"msg":"\\u003cb\\u003e \\u0026 \\u2028\\u2029 é","n":1,"scope":' in line
    assert json.loads(line)["msg"] == "<b> & \u2028\u2029 é"
