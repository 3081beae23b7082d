"""The CloudEvent envelope and its reading on delivery, field for field as daprd."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sidecar import cloudevents, json_reader
from sidecar.go_marshal import marshal

NOW = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def wire(event: dict[str, Any]) -> Any:
    """What a subscriber reads of an event: its JSON as the sidecar writes it."""
    return json.loads(marshal(event))


def envelope(data: bytes, content_type: str, **metadata: str) -> Any:
    return wire(envelope_map(data, content_type, **metadata))


def envelope_map(data: bytes, content_type: str, **metadata: str) -> dict[str, Any]:
    return cloudevents.new_envelope(
        data=data,
        content_type=content_type,
        topic="orders",
        pubsubname="pubsub",
        source="publisher-app",
        traceparent=TRACE,
        tracestate="k=v",
        metadata=metadata,
        now=NOW,
    )


def test_json_data_is_parsed_and_every_daprd_field_is_set() -> None:
    event = envelope(b'{"a": 1, "big": 123456789012345678901234567890}', "application/json")
    assert event["data"] == {"a": 1, "big": 123456789012345678901234567890}
    assert event["type"] == "com.dapr.event.sent"
    assert event["specversion"] == "1.0"
    assert event["source"] == "publisher-app"
    assert event["datacontenttype"] == "application/json"
    assert event["topic"] == "orders"
    assert event["pubsubname"] == "pubsub"
    assert event["traceid"] == event["traceparent"] == TRACE
    assert event["tracestate"] == "k=v"
    assert event["time"] == "2026-01-02T03:04:05Z"
    assert len(str(event["id"])) == 36
    assert "subject" not in event and "data_base64" not in event


def test_json_content_type_with_parameters_is_json() -> None:
    assert envelope(b"[1,2]", "application/json; charset=utf-8")["data"] == [1, 2]


def test_plus_json_is_a_string_like_contrib() -> None:
    # contrib's IsJSONContentType matches application/json only.
    assert envelope(b'{"a":1}', "application/vnd.x+json")["data"] == '{"a":1}'


def test_invalid_json_falls_back_to_text() -> None:
    assert envelope(b"{nope", "application/json")["data"] == "{nope"
    assert envelope(b"", "application/json")["data"] == ""


def test_json_data_is_its_first_value_as_a_go_decoder_reads_it() -> None:
    """contrib's unmarshalPrecise decodes once with a json.Decoder: text after the value is
    never read."""
    assert envelope(b'{"a": 1} trailing', "application/json")["data"] == {"a": 1}
    assert envelope(b"[1] [2]", "application/json")["data"] == [1]


def test_default_content_type_is_text_plain() -> None:
    event = envelope(b"hello", "")
    assert event["datacontenttype"] == "text/plain"
    assert event["data"] == "hello"


def test_octet_stream_goes_to_data_base64() -> None:
    event = envelope(b"\x00\xff", "application/octet-stream")
    assert "data" not in event
    assert base64.b64decode(str(event["data_base64"])) == b"\x00\xff"


def test_cloudevent_metadata_overrides_fields() -> None:
    event = envelope(
        b"x",
        "text/plain",
        **{
            "cloudevent.id": "my-id",
            "cloudevent.source": "src",
            "cloudevent.type": "job.completed",
            "cloudevent.subject": "job-1",
            "Cloudevent.TraceParent": "00-11111111111111111111111111111111-2222222222222222-01",
            "cloudevent.tracestate": "a=b",
        },
    )
    assert (event["id"], event["source"], event["type"], event["subject"]) == (
        "my-id",
        "src",
        "job.completed",
        "job-1",
    )
    assert event["traceparent"] == event["traceid"]
    assert event["traceparent"] == "00-11111111111111111111111111111111-2222222222222222-01"
    assert event["tracestate"] == "a=b"


def test_passthrough_cloudevent_keeps_its_fields_and_gets_topic_and_defaults() -> None:
    body = json.dumps({"id": "own", "data": {"x": 1}, "topic": "other", "subject": "s"}).encode()
    event = cloudevents.from_cloudevent(
        body, topic="orders", pubsubname="pubsub", traceparent=TRACE, now=NOW
    )
    assert event["id"] == "own" and event["subject"] == "s" and wire(event)["data"] == {"x": 1}
    assert event["topic"] == "orders" and event["pubsubname"] == "pubsub"
    assert event["source"] == "Dapr" and event["type"] == "com.dapr.event.sent"
    assert event["specversion"] == "1.0"
    assert event["time"] == "2026-01-02T03:04:05Z"
    assert event["traceparent"] == TRACE


def test_passthrough_keeps_its_own_time() -> None:
    body = b'{"id": "1", "time": "2020-01-01T00:00:00Z"}'
    event = cloudevents.from_cloudevent(body, topic="t", pubsubname="p", traceparent=TRACE)
    assert event["time"] == "2020-01-01T00:00:00Z"


GO_MAP = "Go value of type map[string]interface {}"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "invalid character 'o' in literal null (expecting 'u')"),
        (b"nah", "invalid character 'a' in literal null (expecting 'u')"),
        (b'{"a": tru}', "invalid character '}' in literal true (expecting 'e')"),
        (b'{"a": 1.}', "invalid character '}' after decimal point in numeric literal"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a": 1 "b": 2}', "invalid character '\"' after object key:value pair"),
        (b'{"a": "\\x"}', "invalid character 'x' in string escape code"),
        (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
        (b'{"a": t', "unexpected EOF"),
        (b"{'a': 1}", "invalid character '\\'' looking for beginning of object key string"),
        (b'{"a": 1,}', "invalid character '}' looking for beginning of object key string"),
        (b'{"a": [1, x]}', "invalid character 'x' looking for beginning of value"),
        (b'{"a": "b', "unexpected EOF"),
        (b'{"a"', "unexpected EOF"),
        (b" \n", "EOF"),
        (b"[1, 2]", f"json: cannot unmarshal array into {GO_MAP}"),
        (b"true", f"json: cannot unmarshal bool into {GO_MAP}"),
        (b"1.5", f"json: cannot unmarshal number into {GO_MAP}"),
    ],
)
def test_passthrough_of_a_non_object_is_an_error_worded_as_go(body: bytes, why: str) -> None:
    with pytest.raises(cloudevents.CloudEventError) as caught:
        cloudevents.from_cloudevent(body, topic="t", pubsubname="p", traceparent=TRACE)
    assert str(caught.value) == why


def test_passthrough_reads_the_first_value_only() -> None:
    """contrib decodes the event with one json.Decoder Decode: what follows is never read."""
    body = b'{"id": "1", "data": 2}\n{"id": "2"} trailing'
    event = cloudevents.from_cloudevent(body, topic="t", pubsubname="p", traceparent=TRACE)
    assert (event["id"], wire(event)["data"]) == ("1", 2)


def test_ttl_sets_expiration_and_expiry_is_detected() -> None:
    event = envelope(b"x", "text/plain")
    cloudevents.apply_ttl(event, {"ttlInSeconds": "10"}, now=NOW)
    assert event["expiration"] == "2026-01-02T03:04:15Z"
    assert not cloudevents.has_expired(event, now=NOW + timedelta(seconds=9))
    assert cloudevents.has_expired(event, now=NOW + timedelta(seconds=11))


@pytest.mark.parametrize("ttl", ["", "-5", "abc"])
def test_invalid_ttl_is_ignored_like_contrib(ttl: str) -> None:
    event = envelope(b"x", "text/plain")
    cloudevents.apply_ttl(event, {"ttlInSeconds": ttl}, now=NOW)
    assert "expiration" not in event


def test_unparseable_expiration_never_expires() -> None:
    assert not cloudevents.has_expired({"expiration": "tomorrow"})


def test_traceparent_is_generated_in_w3c_format() -> None:
    parts = cloudevents.new_traceparent().split("-")
    assert [len(p) for p in parts] == [2, 32, 16, 2]
    assert cloudevents.new_traceparent() != cloudevents.new_traceparent()


def test_delivered_event_is_posted_byte_for_byte_with_trace_fallback() -> None:
    data = b'{"id":"e1","data":"x"}'
    event, body = cloudevents.parse_delivered(
        data, {"traceparent": TRACE}, topic="t", pubsubname="p", raw_payload=False
    )
    assert body == data
    assert event["id"] == "e1"
    assert event["traceparent"] == event["traceid"] == TRACE


def test_delivered_garbage_is_an_error() -> None:
    with pytest.raises(cloudevents.CloudEventError):
        cloudevents.parse_delivered(b"garbage", {}, topic="t", pubsubname="p", raw_payload=False)


def test_a_delivered_number_no_float64_holds_makes_the_event_unreadable() -> None:
    """daprd reads a delivery with json.Unmarshal into a map: such a number fails it (then
    dead-lettered or retried), though the publisher kept its text (UseNumber)."""
    for data in (b'{"id":"e1","data":{"n":1e400}}', b'{"id":"e1","data":[-1' + b"0" * 400 + b"]}"):
        with pytest.raises(cloudevents.CloudEventError) as caught:
            cloudevents.parse_delivered(data, {}, topic="t", pubsubname="p", raw_payload=False)
        assert "cannot unmarshal number" in str(caught.value)
    # Within range, however long, it is read (as a float64 where Go reads one).
    event, _ = cloudevents.parse_delivered(
        b'{"id":"e1","data":{"n":123456789012345678901234567890}}',
        {},
        topic="t",
        pubsubname="p",
        raw_payload=False,
    )
    assert event["data"]["n"] == 1.2345678901234568e29
    # Bytes no orjson reads (a lone surrogate escape) still go through Go's rules.
    event, _ = cloudevents.parse_delivered(
        b'{"data":{"n":1e300,"s":"\\ud800"}}', {}, topic="t", pubsubname="p", raw_payload=False
    )
    assert event["data"] == {"n": 1e300, "s": "\ufffd"}


def test_raw_payload_subscription_wraps_the_bytes() -> None:
    event, body = cloudevents.parse_delivered(
        b"\x01raw", {}, topic="t", pubsubname="p", raw_payload=True
    )
    assert event["datacontenttype"] == "application/octet-stream"
    assert base64.b64decode(str(event["data_base64"])) == b"\x01raw"
    assert (event["topic"], event["pubsubname"], event["source"]) == ("t", "p", "Dapr")
    assert json.loads(body) == event
    # Marshalled from a Go map: keys sorted.
    assert list(json.loads(body)) == sorted(event)


def test_event_ids_are_random_version_4_uuids() -> None:
    ids = {cloudevents.new_event_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_too_deeply_nested_json_is_bad_json_not_a_crash() -> None:
    # A RecursionError escaping here failed a whole bulk batch instead of one entry.
    with pytest.raises(ValueError, match="max depth"):
        json_reader.loads("[" * 100_000 + "]" * 100_000)
    assert json_reader.loads("[[1]]") == [[1]]


def test_json_is_read_as_gos_decoder_reads_it() -> None:
    # Unpaired surrogate escapes, in values and keys, become U+FFFD; a pair is one character.
    wire = b'{"a\\ud800": ["x\\udc00y", {"k": "\\ud83d\\ude00", "n": 1}], "s": "\\uDBFF"}'
    expected = {"a\ufffd": ["x\ufffdy", {"k": "\U0001f600", "n": 1}], "s": "\ufffd"}
    assert json_reader.loads(wire) == expected
    assert json_reader.fast_loads(wire) == expected
    # Bytes that are no UTF-8 become one U+FFFD each, as Go's utf8.DecodeRune reads them.
    assert json_reader.loads(b'"\xed\xa0\x80-\xff"') == "\ufffd\ufffd\ufffd-\ufffd"
    # Text that only looks like an escape (an escaped backslash) is left alone.
    assert json_reader.loads(b'"\\\\ud800"') == "\\ud800"
    assert json_reader.loads('"\ud800"') == "\ufffd"
    # What was read can always be written out again.
    assert json.loads(marshal(json_reader.loads(wire))) == expected


def test_mending_handles_json_as_deep_as_the_parser_takes() -> None:
    deep = b'{"k":' * 500 + b'"\\ud800"' + b"}" * 500
    value = json_reader.loads(deep)
    for _ in range(500):
        value = value["k"]
    assert value == "\ufffd"


def test_envelope_of_json_data_with_a_lone_surrogate_escape_serializes() -> None:
    event = cloudevents.new_envelope(
        data=b'{"note": "a\\ud800"}',
        content_type="application/json",
        topic="t",
        pubsubname="p",
        source="app",
        traceparent="",
    )
    assert event["data"] == {"note": "a\ufffd"}
    assert json.loads(marshal(event))["data"] == {"note": "a\ufffd"}
