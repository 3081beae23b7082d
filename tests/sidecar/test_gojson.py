"""Go's encoding/json matching of object keys to struct fields, and its use on what apps
answer a pub/sub delivery (contrib's AppResponse)."""

from __future__ import annotations

import pytest

from sidecar import gojson
from sidecar.postman import Outcome
from sidecar.postman_http import interpret_response


def test_keys_match_in_any_case_and_the_last_non_null_wins() -> None:
    assert gojson.field({"status": "A", "Status": "B"}, "status") == "B"
    assert gojson.field({"STATUS": "A", "status": None}, "status") == "A"
    assert gojson.field({"m": {"a": 1}, "M": None}, "m", null_clears=True) is None
    assert gojson.field({"statuses": 1}, "status") is None


def test_go_folds_a_few_non_ascii_letters_to_ascii_ones() -> None:
    assert gojson.folded("ſtatus") == gojson.folded("STATUS")
    assert gojson.folded("\u212aey") == gojson.folded("key")
    assert gojson.folded("\ufb06atus") != gojson.folded("status")  # "ﬆ" has no simple fold


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        (b'{"status":"DROP"}', Outcome.DROP),
        (b'{"Status":"DROP"}', Outcome.DROP),
        (b'{"STATUS":"RETRY"}', Outcome.RETRY),
        (b'{"sTaTuS":"SUCCESS"}', Outcome.SUCCESS),
        (b'{"status":"DROP","Status":null}', Outcome.DROP),
        (b'{"status":"DROP","STATUS":1}', Outcome.SUCCESS),  # a decode error: success
        (b'{"Status":"whatever"}', Outcome.RETRY),
        (b'{"statuses":"DROP"}', Outcome.SUCCESS),
        # Read as Go's json.Decoder reads it: the first value only, Go's syntax, Go's spaces.
        (b'{"status":"DROP"} trailing', Outcome.DROP),
        (b'  \n{"status":"RETRY"}', Outcome.RETRY),
        (b'{"status":"RETRY","n":NaN}', Outcome.SUCCESS),  # no JSON to Go: no status check
        ('\u00a0{"status":"DROP"}'.encode(), Outcome.SUCCESS),  # not a space to Go
        (b"", Outcome.SUCCESS),
        (b"[1]", Outcome.SUCCESS),
    ],
)
def test_a_subscribers_status_in_any_case(body: bytes, outcome: Outcome) -> None:
    assert interpret_response(200, body)[0] is outcome
