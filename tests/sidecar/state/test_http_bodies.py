"""HTTP state bodies typed as daprd types them (encoding/json, then mapstructure)."""

from __future__ import annotations

import pytest

from sidecar.state.http_bodies import (
    BodyError,
    StateItem,
    bulk_get,
    operation_request,
    save_items,
    transaction,
)


def test_save_items_match_field_names_as_go_does() -> None:
    body = [
        {"KEY": "a", "Etag": None, "metadata": {"x": None}, "options": {"concurrency": "z"}},
        None,
    ]
    assert save_items(body) == [
        StateItem(key="a", metadata={"x": ""}, concurrency="z"),
        StateItem(),
    ]
    assert save_items(None) == []


def test_the_first_type_error_in_document_order_is_reported() -> None:
    body = [{"metadata": {"a": [1]}, "etag": 5}]
    with pytest.raises(BodyError) as caught:
        save_items(body)
    assert str(caught.value) == (
        "json: cannot unmarshal array into Go struct field SetRequest.metadata of type string"
    )


def test_mapstructure_reports_every_error_sorted() -> None:
    request = {"key": 1, "Metadata": {"b": True, "a": {"n": None}}, "contenttype": 2.5}
    with pytest.raises(BodyError) as caught:
        operation_request(request, delete=False)
    assert str(caught.value) == (
        "4 error(s) decoding:\n\n"
        "* 'ContentType' expected type 'string', got unconvertible type 'float64', value: '2.5'\n"
        "* 'Key' expected type 'string', got unconvertible type 'float64', value: '1'\n"
        "* 'Metadata[a]' expected type 'string', got unconvertible type "
        "'map[string]interface {}', value: 'map[n:<nil>]'\n"
        "* 'Metadata[b]' expected type 'string', got unconvertible type 'bool', value: 'true'"
    )
    # A delete has no ContentType: mapstructure ignores keys it has no field for.
    assert operation_request({"key": "k", "contentType": 1}, delete=True) == StateItem(key="k")
    with pytest.raises(BodyError) as caught:
        operation_request({"metadata": []}, delete=True)
    assert str(caught.value) == "1 error(s) decoding:\n\n* 'Metadata' expected a map, got 'slice'"


def test_bulk_and_transaction_bodies() -> None:
    assert bulk_get({"keys": ["a", None], "parallelism": 3}, b"").keys == ["a", ""]
    with pytest.raises(BodyError, match="number 1e2 into Go struct field"):
        bulk_get({"parallelism": 100.0}, b'{"parallelism": 1e2}')
    with pytest.raises(BodyError, match="string into Go struct field .*parallelism of type int"):
        bulk_get({"parallelism": "2"}, b"")
    parsed = transaction({"Operations": [None, {"operation": "delete", "request": 1}]})
    assert [(o.operation, o.request) for o in parsed.operations] == [("", None), ("delete", 1)]
    with pytest.raises(BodyError, match="into Go value of type http.stateTransactionRequestBody"):
        transaction([])
