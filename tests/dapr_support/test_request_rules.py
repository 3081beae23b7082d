"""How both services read a body's media type and the Idempotency-Key header."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError

from dapr_support.request_rules import idempotency_key, not_json_detail, reads_as_json


@pytest.mark.parametrize(
    ("content_type", "json"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/problem+json", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("", False),
        (None, False),
    ],
)
def test_what_reads_as_json_is_what_fastapi_parses(content_type: str | None, json: bool) -> None:
    assert reads_as_json(content_type) is json


def test_a_body_refused_only_for_its_media_type_is_a_415_detail() -> None:
    body_missing = [{"loc": ("body",), "msg": "Field required"}]
    assert not_json_detail(body_missing, "text/plain") == (
        "send the body as application/json (it came with 'text/plain')"
    )
    assert not_json_detail(body_missing, None) == (
        "send the body as application/json (it came with no Content-Type)"
    )
    assert not_json_detail(body_missing, "application/json") is None  # a real 422
    field = [{"loc": ("body", "input"), "msg": "Input should be an object"}]
    assert not_json_detail(field, "text/plain") is None


def test_the_idempotency_key_is_one_value_without_the_spaces_around_it() -> None:
    assert idempotency_key([]) is None
    assert idempotency_key([" order-42\t"]) == "order-42"
    for values in (["a", "b"], ["a", "a"], ["  "]):
        with pytest.raises(RequestValidationError) as refused:
            idempotency_key(values)
        (error,) = refused.value.errors()
        assert error["loc"] == ("header", "Idempotency-Key")
