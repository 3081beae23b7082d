"""The gRPC envelope of a streamed event, as daprd's GRPCEnvelopeFromSubscriptionMessage.

The expected bytes of ``data`` are what Go's ``json.Marshal`` writes for a value it decoded
from JSON (numbers are float64, keys sorted, HTML characters escaped).
"""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.go_values import encoding_json
from sidecar.postman_stream import topic_event_request


@pytest.mark.parametrize(
    ("value", "marshalled"),
    [
        (100, b"100"),
        (-2.5, b"-2.5"),
        (1e21, b"1e+21"),
        (1e20, b"100000000000000000000"),
        (0.000001, b"0.000001"),
        (1e-7, b"1e-7"),
        (-1.5e-10, b"-1.5e-10"),
        (12345678901234567890, b"12345678901234567000"),  # float64 first
        ({"b": [True, None], "a": "x"}, b'{"a":"x","b":[true,null]}'),
        ("<a & b>", b'"\\u003ca \\u0026 b\\u003e"'),
        ("line\u2028para\u2029", b'"line\\u2028para\\u2029"'),
        ("tab\t\x01é", b'"tab\\t\\u0001\xc3\xa9"'),
    ],
)
def test_encoding_json_writes_what_go_marshal_writes(value: Any, marshalled: bytes) -> None:
    assert encoding_json(value) == marshalled


def envelope(event: dict[str, Any]) -> Any:
    return topic_event_request(event, topic="orders", pubsubname="pubsub", path="/")


def base_event(**fields: Any) -> dict[str, Any]:
    return {
        "id": "e1",
        "source": "app",
        "type": "com.dapr.event.sent",
        "specversion": "1.0",
        "topic": "orders",
        "pubsubname": "pubsub",
        **fields,
    }


def test_json_data_is_marshalled_and_other_fields_are_extensions() -> None:
    event = base_event(datacontenttype="application/json; charset=utf-8", data={"z": 1, "a": 2})
    event["traceparent"] = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    got = envelope(event)
    assert (got.id, got.source, got.type, got.spec_version) == (
        "e1",
        "app",
        "com.dapr.event.sent",
        "1.0",
    )
    assert got.data_content_type == "application/json; charset=utf-8"
    assert got.data == b'{"a":2,"z":1}'
    assert (got.topic, got.pubsub_name, got.path) == ("orders", "pubsub", "/")
    assert set(got.extensions) == {"topic", "pubsubname", "traceparent"}


def test_text_data_goes_as_it_is_and_unknown_types_carry_no_data() -> None:
    assert envelope(base_event(datacontenttype="text/csv", data="a,b")).data == b"a,b"
    assert envelope(base_event(datacontenttype="application/xml", data="<a/>")).data == b"<a/>"
    assert envelope(base_event(datacontenttype="application/x-yaml", data="a: 1")).data == b""
    assert envelope(base_event(datacontenttype="application/json", data=None)).data == b""


def test_data_base64_is_decoded_and_wins_over_data() -> None:
    event = base_event(datacontenttype="application/octet-stream", data_base64="AAH/\n")
    event["data"] = "ignored"
    assert envelope(event).data == b"\x00\x01\xff"


@pytest.mark.parametrize(
    "event",
    [
        base_event(datacontenttype="application/octet-stream", data_base64=12),
        base_event(datacontenttype="application/octet-stream", data_base64="not base64!"),
        base_event(datacontenttype="text/plain", data={"not": "text"}),
    ],
)
def test_data_daprd_cannot_put_in_an_envelope_is_an_error(event: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        envelope(event)


def test_fields_that_are_not_strings_read_as_empty() -> None:
    got = envelope(base_event(id=7, source=None))
    assert (got.id, got.source) == ("", "")
