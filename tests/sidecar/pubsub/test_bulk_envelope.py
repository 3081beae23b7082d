"""An app's answer to a bulk delivery, decoded as daprd's json.Decoder decodes it."""

from __future__ import annotations

import re

import pytest

from sidecar.bulk_envelope import AppBulkResponseError, parse_bulk_response


def test_statuses_are_read_in_order_and_text_after_the_answer_is_never_read() -> None:
    body = b'{"Statuses": [{"entryId": "1", "status": "SUCCESS"}, null]} and then some'
    assert parse_bulk_response(body) == [("1", "SUCCESS"), ("", "")]
    assert parse_bulk_response(b"null") == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"  ", "EOF"),
        (b'{"statuses": [', "unexpected EOF"),
        (b'{"statuses": NaN}', "invalid character 'N' looking for beginning of value"),
        (b"{'statuses': []}", "invalid character '\\'' looking for beginning of object key string"),
    ],
)
def test_an_answer_that_is_no_json_fails_with_gos_error(body: bytes, error: str) -> None:
    with pytest.raises(AppBulkResponseError, match=f"^{re.escape(error)}$"):
        parse_bulk_response(body)
