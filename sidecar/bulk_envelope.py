"""daprd's bulk subscribe wire format: the envelope posted to the app and the app's answer.

The envelope is daprd's ``NewBulkSubscribeEnvelope`` (``pkg/runtime/pubsub/
bulksubscribe_events.go``); the answer is decoded as Go's ``json.Decoder`` decodes contrib's
``AppBulkResponse`` into ``{"statuses": [{"entryId", "status"}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sidecar import json_reader
from sidecar.go_marshal import marshal

BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"  #: contrib's DefaultBulkEventType
CONTENT_TYPE = "application/json"  #: the request's Content-Type


class AppBulkResponseError(ValueError):
    """The app's 2xx answer cannot be decoded; daprd retries every entry of the request."""


def envelope(
    envelope_id: str, pubsubname: str, topic: str, items: Sequence[Mapping[str, Any]]
) -> bytes:
    """The request body; ``items`` are ``{entryId, event, metadata, contentType}`` objects in
    that order, each ``event`` a string or already marshalled (an orjson Fragment) and each
    ``metadata`` sorted."""
    # A Go map, whose keys are written sorted, holding the entries (Go structs, whose fields
    # keep their order). The bulk metadata daprd's default bulk subscriber builds holds only
    # the pubsub name.
    return marshal(
        {
            "entries": list(items),
            "id": envelope_id,
            "metadata": {"pubsubName": pubsubname},
            "pubsubname": pubsubname,
            "topic": topic,
            "type": BULK_EVENT_TYPE,
        },
        sort_keys=False,
    )


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """Go matches JSON keys to struct fields case-insensitively; the last match wins."""
    value = None
    for key, item in obj.items():
        if key.lower() == name.lower():
            value = item
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AppBulkResponseError(f"{where}: cannot unmarshal {type(value).__name__} into string")
    return value


def parse_bulk_response(body: bytes) -> list[tuple[str, str]]:
    """The ``(entryId, status)`` pairs of the app's answer, in order; raises on bad JSON/types.

    An empty body is an error (Go's decoder reports EOF); ``null`` or an object without
    ``statuses`` answer no entry, so each is retried as "response not received".
    """
    try:
        value = json_reader.go_decode(body)  # the first value only, as Go's json.Decoder
    except ValueError as exc:
        raise AppBulkResponseError(str(exc)) from None
    if value is None:
        return []
    if not isinstance(value, dict):
        raise AppBulkResponseError(f"cannot unmarshal {type(value).__name__} into AppBulkResponse")
    statuses = _field(value, "statuses")
    if statuses is None:
        return []
    if not isinstance(statuses, list):
        raise AppBulkResponseError("statuses: expected an array")
    pairs: list[tuple[str, str]] = []
    for position, item in enumerate(statuses):
        if item is None:
            pairs.append(("", ""))
            continue
        if not isinstance(item, dict):
            raise AppBulkResponseError(f"statuses[{position}]: expected an object")
        pairs.append(
            (
                _string(_field(item, "entryId"), f"statuses[{position}].entryId"),
                _string(_field(item, "status"), f"statuses[{position}].status"),
            )
        )
    return pairs
