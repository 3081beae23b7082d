"""The CloudEvents 1.0 envelope daprd wraps around published data, and its reading on delivery.

Pure functions, field for field as components-contrib ``pubsub/envelope.go`` and daprd's
``pkg/runtime/pubsub/cloudevents.go`` / ``pkg/runtime/subscription/subscription.go`` build them.
"""

from __future__ import annotations

import base64
import functools
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sidecar import json_reader
from sidecar.go_marshal import Numbers, OutOfRange, as_text, go_string, marshal
from sidecar.ttl import message_ttl

DEFAULT_TYPE = "com.dapr.event.sent"
DEFAULT_SOURCE = "Dapr"  #: used when neither the publisher app id nor an override is known
DEFAULT_DATA_CONTENT_TYPE = "text/plain"
SPEC_VERSION = "1.0"
CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"

#: ``cloudevent.<field>`` publish metadata overriding envelope fields (daprd's mapstructure tags).
_OVERRIDES = ("id", "source", "type", "subject", "traceid", "traceparent", "tracestate")


class CloudEventError(ValueError):
    """The published body is no CloudEvent (daprd answers ERR_PUBSUB_CLOUD_EVENTS_SER)."""


def _is_content_type(content_type: str, expected: str) -> bool:
    # contrib's isContentType: exact media type, parameters after ";" ignored, case-insensitive.
    lower = content_type.lower()
    return lower == expected or lower.split(";", 1)[0] == expected


def is_json_content_type(content_type: str) -> bool:
    return _is_content_type(content_type, "application/json")


def is_binary_content_type(content_type: str) -> bool:
    return _is_content_type(content_type, "application/octet-stream")


def is_cloudevent_content_type(content_type: str) -> bool:
    return _is_content_type(content_type, CLOUDEVENT_CONTENT_TYPE)


#: Go's names of JSON kinds in encoding/json's "cannot unmarshal" errors.
_GO_KINDS: tuple[tuple[type, str], ...] = (
    (list, "array"),
    (str, "string"),
    (bool, "bool"),
    (int, "number"),
    (float, "number"),
)


def go_decode_object(data: bytes, numbers: Numbers | None = None) -> dict[str, Any]:
    """The JSON object at the start of ``data`` as contrib's unmarshalPrecise reads it into a
    Go map (``go_decode``); raises CloudEventError worded as Go's decoder words it."""
    try:
        value = json_reader.go_decode(data, numbers)
    except ValueError as exc:
        raise CloudEventError(str(exc)) from None
    if isinstance(value, dict):
        return value
    if value is None:  # Go decodes null into a nil map, and daprd then panics writing to it
        raise CloudEventError("the body is JSON null, not an object")
    kind = next((name for kinds, name in _GO_KINDS if isinstance(value, kinds)), "number")
    raise CloudEventError(
        f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
    )


def new_event_id() -> str:
    """A random (version 4) UUID as text; ``str(uuid.uuid4())`` costs twice as much."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_traceparent() -> str:
    """A fresh sampled W3C traceparent, as daprd starts a span when the caller sent none."""
    ids = secrets.token_hex(24)
    return f"00-{ids[:32]}-{ids[32:]}-01"


def rfc3339(moment: datetime) -> str:
    """Go's ``time.RFC3339``: second precision, ``Z`` for UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=4)
def _format_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def rfc3339_now() -> str:
    """``rfc3339`` of the current time; formatted once per second (publishing is hot)."""
    return _format_second(int(time.time()))


def new_envelope(
    *,
    data: bytes,
    content_type: str,
    topic: str,
    pubsubname: str,
    source: str,
    traceparent: str,
    tracestate: str = "",
    metadata: Mapping[str, str] | None = None,
    now: datetime | None = None,
    numbers: Numbers = as_text,
) -> dict[str, Any]:
    """Wrap ``data`` the way daprd does for a publish with a non-CloudEvent content type.

    JSON data keeps its numbers' text (contrib's unmarshalPrecise); ``numbers`` may say
    otherwise (the outbox), and a number it refuses (OutOfRange) is raised.
    """
    fields = {"id": "", "source": source, "type": "", "subject": ""}
    fields["traceid"] = traceparent
    fields["tracestate"] = tracestate
    traceparent_override = ""
    for key, value in (metadata or {}).items():
        lower = key.lower()
        if lower.startswith("cloudevent.") and lower[11:] in _OVERRIDES:
            if lower[11:] == "traceparent":
                traceparent_override = value
            else:
                fields[lower[11:]] = value
    # daprd: a traceparent override supersedes traceid; both fields carry the same value.
    trace = traceparent_override or fields["traceid"]
    content_type = content_type or DEFAULT_DATA_CONTENT_TYPE
    event: dict[str, Any] = {
        "id": fields["id"] or new_event_id(),
        "specversion": SPEC_VERSION,
        "datacontenttype": content_type,
        "source": fields["source"] or DEFAULT_SOURCE,
        "type": fields["type"] or DEFAULT_TYPE,
        "topic": topic,
        "pubsubname": pubsubname,
        "traceid": trace,
        "traceparent": trace,
        "tracestate": fields["tracestate"],
        "time": rfc3339(now) if now else rfc3339_now(),
    }
    if is_json_content_type(content_type):
        try:  # contrib's unmarshalPrecise: a json.Decoder, so the first value only
            event["data"] = json_reader.go_decode(data, numbers)
        except OutOfRange:
            raise
        except ValueError:
            # contrib falls back to the text when the "JSON" does not parse.
            event["data"] = go_string(data)
    elif is_binary_content_type(content_type):
        event["data_base64"] = base64.b64encode(data).decode("ascii")
    else:
        event["data"] = go_string(data)
    if fields["subject"]:
        event["subject"] = fields["subject"]
    return event


def from_cloudevent(
    data: bytes,
    *,
    topic: str,
    pubsubname: str,
    traceparent: str,
    tracestate: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The publisher's own CloudEvent (``application/cloudevents+json``), completed like contrib."""
    event = go_decode_object(data, as_text)  # unmarshalPrecise: numbers keep their text
    if "time" not in event:
        event["time"] = rfc3339(now) if now else rfc3339_now()
    # contrib's FromCloudEvent adds the request's trace context only where the event has none:
    # traceid and traceparent together when traceid is absent, tracestate when it is absent.
    if "traceid" not in event:
        event["traceid"] = traceparent
        event["traceparent"] = traceparent
    if "tracestate" not in event:
        event["tracestate"] = tracestate
    event["topic"] = topic
    event["pubsubname"] = pubsubname
    for key, default in (("source", DEFAULT_SOURCE), ("type", DEFAULT_TYPE)):
        if event.get(key) is None:
            event[key] = default
    if event.get("specversion") is None:
        event["specversion"] = SPEC_VERSION
    return event


#: The texts Go's strconv.ParseBool reads as true and as false; it refuses any other.
_GO_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def is_raw_payload(metadata: Mapping[str, str]) -> bool:
    """contrib's metadata.IsRawPayload: ``rawPayload`` by strconv.ParseBool, empty or absent is
    false, any other text a ValueError (daprd refuses such a publish or delivery)."""
    value = metadata.get("rawPayload", "")
    if not value or value in _GO_FALSE:
        return False
    if value in _GO_TRUE:
        return True
    raise ValueError(f"rawPayload value must be a valid boolean: actual is '{value}'")


def apply_ttl(
    event: dict[str, Any], metadata: Mapping[str, str], now: datetime | None = None
) -> None:
    """Add ``expiration`` when the publish asked for a TTL (no broker here handles TTL itself),
    as contrib's ApplyMetadata: the expiry time in whole seconds, so a TTL of 0 has expired by
    the time the event is delivered."""
    duration = message_ttl(metadata)
    if duration is not None:
        event["expiration"] = rfc3339((now or datetime.now(UTC)) + duration)


def has_expired(event: Mapping[str, Any], now: datetime | None = None) -> bool:
    value = event.get("expiration")
    if not value or not isinstance(value, str):
        return False
    try:
        expiration = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    if expiration.tzinfo is None:
        return False
    return expiration < (now or datetime.now(UTC))


def from_raw_payload(data: bytes, *, topic: str, pubsubname: str) -> dict[str, Any]:
    """The subscriber-side wrapper of a raw payload; its id is new per delivery, as in daprd."""
    return {
        "id": str(uuid.uuid4()),
        "specversion": SPEC_VERSION,
        "datacontenttype": "application/octet-stream",
        "source": DEFAULT_SOURCE,
        "type": DEFAULT_TYPE,
        "topic": topic,
        "pubsubname": pubsubname,
        "data_base64": base64.b64encode(data).decode("ascii"),
    }


def parse_delivered(
    data: bytes,
    metadata: Mapping[str, str],
    *,
    topic: str,
    pubsubname: str,
    raw_payload: bool,
) -> tuple[dict[str, Any], bytes]:
    """The CloudEvent of a delivered message and the body daprd posts to the app.

    A regular message is posted byte for byte as published; trace fields missing from the
    event fall back to the broker message metadata. A ``rawPayload`` subscription wraps the bytes.
    """
    if raw_payload:
        event = from_raw_payload(data, topic=topic, pubsubname=pubsubname)
        for key in ("traceid", "traceparent", "tracestate"):
            if key in metadata:
                event[key] = metadata[key]
        if "traceparent" in metadata:
            event["traceid"] = metadata["traceparent"]
        return event, marshal(event)
    try:
        event = json_reader.read_delivered(data)
    except ValueError as exc:
        raise CloudEventError(f"error deserializing cloud event: {exc}") from None
    if not isinstance(event, dict):
        raise CloudEventError("error deserializing cloud event: not a JSON object")
    if "traceid" not in event and "traceid" in metadata:
        event["traceid"] = metadata["traceid"]
    if "traceparent" not in event and "traceparent" in metadata:
        event["traceparent"] = metadata["traceparent"]
        event["traceid"] = metadata["traceparent"]
    if "tracestate" not in event and "tracestate" in metadata:
        event["tracestate"] = metadata["tracestate"]
    return event, data
