"""Publishing through a real sidecar, delivery to a real app, the outbox.

The publish API runs through raw HTTP, the sync and the aio SDK client (fixture ``api``) on both
pubsub types (``pubsub.redis`` and ``pubsub.in-memory``): envelope fields, metadata overrides,
rawPayload, CloudEvent pass-through, TTL, bulk publish and daprd's errors (contract section 4).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
import redis
from dapr.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2

from tests.conftest import RedisServer
from tests.procs import wait_until
from tests.sidecar.api.conformance import APP_ID, PUBSUBS, Conformance
from tests.sidecar.api.conftest import Sidecar, TinyApp, unique
from tests.sidecar.api.transports import Api, fails

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]")


def delivered(app: TinyApp, path: str, marker: str) -> list[dict[str, Any]]:
    return [r for r in app.received() if r["path"] == path and marker in json.dumps(r["event"])]


def wait_for(app: TinyApp, path: str, marker: str, count: int = 1) -> list[dict[str, Any]]:
    wait_until(lambda: len(delivered(app, path, marker)) >= count, timeout=15)
    found = delivered(app, path, marker)
    assert len(found) == count, found
    return [record["event"] for record in found]


def stamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, value
    return parsed


def assert_envelope(event: dict[str, Any], pubsub: str, topic: str, content_type: str) -> None:
    """The fields daprd wraps around published data."""
    assert uuid.UUID(event["id"]).version == 4
    assert event["source"] == APP_ID
    assert event["type"] == "com.dapr.event.sent"
    assert event["specversion"] == "1.0"
    assert event["datacontenttype"] == content_type
    assert (event["topic"], event["pubsubname"]) == (topic, pubsub)
    assert TRACEPARENT.fullmatch(event["traceparent"]), event
    assert event["traceid"] == event["traceparent"]
    assert "tracestate" in event
    assert abs((stamp(event["time"]) - datetime.now(UTC)).total_seconds()) < 60


@pytest.fixture(params=PUBSUBS)
def pubsub(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def test_publish_envelope_and_content_types(
    api: Api, pubsub: str, conformance: Conformance
) -> None:
    marker, app = unique(f"env-{api.name}"), conformance.app
    await api.publish(pubsub, "conf", json.dumps({"m": marker}).encode(), "application/json", {})
    await api.publish(pubsub, "conf", f"text {marker}".encode(), "text/plain", {})
    await api.publish(pubsub, "conf", f"default {marker}".encode(), "", {})
    events = wait_for(app, f"/events/{pubsub}", marker, 3)
    by_type = {e["datacontenttype"]: e for e in events}
    assert by_type["application/json"]["data"] == {"m": marker}
    assert_envelope(by_type["application/json"], pubsub, "conf", "application/json")
    texts = sorted(e["data"] for e in events if e["datacontenttype"] == "text/plain")
    assert texts == [f"default {marker}", f"text {marker}"]  # no content type = text/plain
    for event in events:
        assert_envelope(event, pubsub, "conf", event["datacontenttype"])
    assert len({e["id"] for e in events}) == 3
    # Bytes go to data_base64, JSON-safe.
    raw = marker.encode() + b"\x00\xff"
    await api.publish(pubsub, "conf", raw, "application/octet-stream", {})
    wait_until(lambda: any(binary_events(app, pubsub, raw)), timeout=15)


def binary_events(app: TinyApp, pubsub: str, raw: bytes) -> list[dict[str, Any]]:
    encoded = base64.b64encode(raw).decode()
    return [
        r["event"]
        for r in app.received()
        if r["path"] == f"/events/{pubsub}" and r["event"].get("data_base64") == encoded
    ]


async def test_publish_metadata_overrides_and_ttl(
    api: Api, pubsub: str, conformance: Conformance
) -> None:
    marker = unique(f"meta-{api.name}")
    overrides = {
        "cloudevent.id": f"id-{marker}",
        "cloudevent.source": "elsewhere",
        "cloudevent.type": "conf.type",
        "cloudevent.subject": f"subject-{marker}",
        "ttlInSeconds": "120",
    }
    await api.publish(pubsub, "conf", json.dumps(marker).encode(), "application/json", overrides)
    (event,) = wait_for(conformance.app, f"/events/{pubsub}", marker)
    assert event["id"] == f"id-{marker}"
    assert (event["source"], event["type"]) == ("elsewhere", "conf.type")
    assert event["subject"] == f"subject-{marker}"
    assert event["data"] == marker
    remaining = (stamp(event["expiration"]) - datetime.now(UTC)).total_seconds()
    assert 60 < remaining <= 121


async def test_publish_cloudevent_passes_through(
    api: Api, pubsub: str, conformance: Conformance
) -> None:
    marker = unique(f"ce-{api.name}")
    own = {
        "id": f"own-{marker}",
        "source": "my-source",
        "type": "my.type",
        "specversion": "1.0",
        "topic": "not-this-one",
        "datacontenttype": "application/json",
        "data": {"m": marker},
    }
    body = json.dumps(own).encode()
    await api.publish(pubsub, "conf", body, "application/cloudevents+json", {})
    minimal = json.dumps({"id": f"min-{marker}", "data": marker}).encode()
    await api.publish(pubsub, "conf", minimal, "application/cloudevents+json", {})
    events = {e["id"]: e for e in wait_for(conformance.app, f"/events/{pubsub}", marker, 2)}
    kept = events[f"own-{marker}"]
    assert (kept["source"], kept["type"], kept["data"]) == ("my-source", "my.type", {"m": marker})
    assert (kept["topic"], kept["pubsubname"]) == ("conf", pubsub)  # overwritten
    assert TRACEPARENT.fullmatch(kept["traceparent"]) and stamp(kept["time"])
    defaulted = events[f"min-{marker}"]
    # contrib's FromCloudEvent defaults: source "Dapr" (not the app id), daprd's event type.
    assert (defaulted["source"], defaulted["type"]) == ("Dapr", "com.dapr.event.sent")
    assert defaulted["specversion"] == "1.0"


async def test_publish_raw_payload(api: Api, pubsub: str, conformance: Conformance) -> None:
    """rawPayload: the broker gets the bytes alone; a rawPayload subscription wraps them."""
    raw = unique(f"raw-{api.name}").encode() + b"\x01not an envelope"
    await api.publish(pubsub, "conf-raw", raw, "text/plain", {"rawPayload": "true"})
    encoded = base64.b64encode(raw).decode()
    (event,) = wait_for(conformance.app, f"/events/raw-{pubsub}", encoded)
    assert event["data_base64"] == encoded
    assert event["datacontenttype"] == "application/octet-stream"
    assert (event["topic"], event["pubsubname"]) == ("conf-raw", pubsub)


async def test_bulk_publish(api: Api, pubsub: str, conformance: Conformance) -> None:
    marker = unique(f"bulk-{api.name}")
    failed = await api.bulk_publish(pubsub, "conf", [f"one {marker}", f"two {marker}"], {})
    assert failed == []
    events = wait_for(conformance.app, f"/events/{pubsub}", marker, 2)
    assert sorted(e["data"] for e in events) == [f"one {marker}", f"two {marker}"]
    for event in events:
        assert_envelope(event, pubsub, "conf", "text/plain")


async def test_publish_errors(api: Api, conformance: Conformance) -> None:
    unknown = await fails(api.publish("nosuch", "conf", b"x", "text/plain", {}))
    unknown.expect(
        http=(404, "ERR_PUBSUB_NOT_FOUND"), grpc=("INVALID_ARGUMENT", "DAPR_PUBSUB_NOT_FOUND")
    )
    # daprd's PubSub(name).NotFound() skips the ResourceInfo the other pub/sub errors carry.
    assert (unknown.message, unknown.resource) == ("pubsub nosuch is not found", None)
    unknown_bulk = await fails(api.bulk_publish("nosuch", "conf", ["x"], {}))
    unknown_bulk.expect(
        http=(404, "ERR_PUBSUB_NOT_FOUND"), grpc=("INVALID_ARGUMENT", "DAPR_PUBSUB_NOT_FOUND")
    )
    empty_topic = await fails(api.publish("mempubsub", "", b"x", "text/plain", {}))
    # Over HTTP, daprd cleans the trailing slash off /v1.0/publish/mempubsub/ before routing:
    # no publish route matches, and the fallback (invocation) finds no app id.
    empty_topic.expect(
        http=(404, "ERR_DIRECT_INVOKE"),
        grpc=("INVALID_ARGUMENT", "DAPR_PUBSUB_TOPIC_NAME_EMPTY"),
    )
    broken = await fails(
        api.publish("mempubsub", "conf", b"[1, 2]", "application/cloudevents+json", {})
    )
    broken.expect(
        http=(500, "ERR_PUBSUB_CLOUD_EVENTS_SER"),
        grpc=("INVALID_ARGUMENT", "DAPR_PUBSUB_CLOUD_EVENT_CREATION"),
    )
    forbidden = await fails(api.publish("mempubsub", "conf-protected", b"x", "text/plain", {}))
    forbidden.expect(
        http=(403, "ERR_PUBSUB_FORBIDDEN"), grpc=("PERMISSION_DENIED", "DAPR_PUBSUB_FORBIDDEN")
    )
    assert forbidden.message == f"topic conf-protected is not allowed for app id {APP_ID}"
    assert forbidden.resource == ("pubsub", "mempubsub")
    forbidden_bulk = await fails(api.bulk_publish("mempubsub", "conf-protected", ["x"], {}))
    forbidden_bulk.expect(
        http=(403, "ERR_PUBSUB_FORBIDDEN"), grpc=("PERMISSION_DENIED", "DAPR_PUBSUB_FORBIDDEN")
    )


async def test_publish_to_a_dead_broker(api: Api, conformance: Conformance) -> None:
    conformance.doomed_redis.kill9()
    failure = await fails(api.publish("doomedpubsub", "conf", b"x", "text/plain", {}))
    failure.expect(
        http=(500, "ERR_PUBSUB_PUBLISH_MESSAGE"),
        grpc=("INTERNAL", "DAPR_PUBSUB_PUBLISH_MESSAGE"),
    )
    assert "error when publishing to topic conf in pubsub doomedpubsub" in failure.message
    # Bulk: HTTP answers 500 listing every failed entry; gRPC an error and no entries.
    bulk = await fails(api.bulk_publish("doomedpubsub", "conf", ["a", "b"], {}))
    bulk.expect(
        http=(500, "ERR_PUBSUB_PUBLISH_MESSAGE"),
        grpc=("INTERNAL", "DAPR_PUBSUB_PUBLISH_MESSAGE"),
    )
    if api.name == "http":
        assert sorted(bulk.failed_entries) == ["0", "1"]


def test_http_publish_topic_with_slashes(sidecar: Sidecar, app: TinyApp) -> None:
    marker = unique("nested")
    response = httpx.post(
        f"{sidecar.http}/v1.0/publish/pubsub/orders/eu/new",
        content=marker.encode(),
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 204, response.text
    wait_until(lambda: delivered(app, "/events/nested", marker), timeout=15)
    event = delivered(app, "/events/nested", marker)[0]["event"]
    assert event["topic"] == "orders/eu/new"
    assert event["data"] == marker
    assert event["datacontenttype"] == "text/plain"


#: The outbox's two paths: the event appended by the write's script, and daprd's relay.
OUTBOX_STORES = pytest.mark.parametrize("store", ["redisstore", "relaystore"])


def save_announced(sidecar: Sidecar, store: str, key: str, value: str) -> None:
    """One upsert through the outbox of JSON ``value`` as a ``job.created``; it is stored as
    sent (gRPC values are bytes). The test needs ``sdk_http_port`` for the SDK's health wait."""
    with DaprClient(address=sidecar.grpc_address) as client:
        client.execute_state_transaction(
            store,
            [
                TransactionalStateOperation(
                    key=key,
                    data=value,
                    metadata={"contentType": "application/json", "type": "job.created"},
                )
            ],
        )
        assert client.get_state(store, key).data == value.encode()


@OUTBOX_STORES
def test_outbox_transaction_publishes_after_commit(
    sidecar: Sidecar, app: TinyApp, sdk_http_port: int, store: str
) -> None:
    """A transaction on the outbox store is stored and announced, its op metadata copied onto the
    event as daprd copies it: ``type`` sets the type, ``cloudevent.type`` is only a field."""
    key = unique("job")
    with DaprClient(address=sidecar.grpc_address) as client:
        client.execute_state_transaction(
            store,
            [
                TransactionalStateOperation(
                    key=key,
                    data=json.dumps({"job": key, "status": "created"}),
                    metadata={
                        "contentType": "application/json",
                        "type": "job.created",
                        "subject": key,
                        "cloudevent.type": "not-an-override",
                    },
                )
            ],
        )
        assert json.loads(client.get_state(store, key).data)["status"] == "created"
    wait_until(lambda: delivered(app, "/events/created", key), timeout=15)
    event = delivered(app, "/events/created", key)[0]["event"]
    assert event["type"] == "job.created"
    assert event["subject"] == key
    assert event["cloudevent.type"] == "not-an-override"
    assert event["contentType"] == "application/json"
    assert event["data"] == {"job": key, "status": "created"}
    assert event["id"].startswith("outbox-")
    assert event["source"] == "api-app"
    assert event["topic"] == "outbox-events"
    # The transaction's trace is in traceid; daprd leaves traceparent empty.
    assert event["traceparent"] == ""
    assert TRACEPARENT.fullmatch(event["traceid"]), event["traceid"]


async def test_unpaired_surrogate_escapes_are_published_as_go_reads_them(
    api: Api, pubsub: str, conformance: Conformance
) -> None:
    """JSON data escaping a lone surrogate is published with U+FFFD in its place, as by daprd."""
    marker = unique(f"surrogate-{api.name}")
    data = json.dumps({"m": marker, "s": "a\ud800b", "\udc00": ["\U0001f600"]}).encode()
    assert b"\\ud800" in data and b"\\ud83d\\ude00" in data  # the escapes, as on the wire
    await api.publish(pubsub, "conf", data, "application/json", {})
    (event,) = wait_for(conformance.app, f"/events/{pubsub}", marker)
    assert event["data"] == {"m": marker, "s": "a\ufffdb", "\ufffd": ["\U0001f600"]}


@OUTBOX_STORES
def test_outbox_event_of_a_value_with_an_unpaired_surrogate(
    sidecar: Sidecar, app: TinyApp, sdk_http_port: int, store: str
) -> None:
    """The value is stored byte for byte; its event carries the data as Go parses it."""
    key = unique("surrogate")
    value = json.dumps({"job": key, "note": "x\udfff"})
    save_announced(sidecar, store, key, value)
    wait_until(lambda: delivered(app, "/events/created", key), timeout=15)
    event = delivered(app, "/events/created", key)[0]["event"]
    assert event["data"] == {"job": key, "note": "x\ufffd"}


@OUTBOX_STORES
def test_outbox_event_of_an_http_value_is_what_daprd_makes_of_the_decoded_value(
    sidecar: Sidecar, app: TinyApp, store: str
) -> None:
    """daprd's outbox publishes a value the HTTP API decoded as Go's json.Marshal of it under
    a JSON content type, else as its %v text; the store keeps its own encoding of it
    (state.redis: json-iterator's, six decimals at most)."""
    as_json, as_text = unique("http-json"), unique("http-text")
    value = {"m": as_json, "pi": 3.14159265358979, "big": 9007199254740993, "tag": "<b>"}
    json_op = {"key": as_json, "value": value, "metadata": {"contentType": "application/json"}}
    text_op = {"key": as_text, "value": {"m": as_text, "a": 1.5}}
    upserts = [{"operation": "upsert", "request": op} for op in (json_op, text_op)]
    with httpx.Client(base_url=sidecar.http, timeout=10) as http:
        answer = http.post(f"/v1.0/state/{store}/transaction", json={"operations": upserts})
        assert answer.status_code == 204, answer.text
        stored = http.get(f"/v1.0/state/{store}/{as_json}").content
    assert json.loads(stored) == {**value, "pi": 3.141593, "big": 9007199254740992}
    wait_until(lambda: delivered(app, "/events/outbox", as_json), timeout=15)
    event = delivered(app, "/events/outbox", as_json)[0]["event"]
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {**value, "big": 9007199254740992}
    wait_until(lambda: delivered(app, "/events/outbox", as_text), timeout=15)
    event = delivered(app, "/events/outbox", as_text)[0]["event"]
    assert event["datacontenttype"] == "text/plain"
    assert event["data"] == f"map[a:1.5 m:{as_text}]"


@OUTBOX_STORES
def test_outbox_projection_and_failed_transaction(
    sidecar: Sidecar, app: TinyApp, store: str
) -> None:
    key, failed_key = unique("proj"), unique("failed")
    http = httpx.Client(base_url=sidecar.http, timeout=10)
    response = http.post(
        f"/v1.0/state/{store}/transaction",
        json={
            "operations": [
                {"operation": "upsert", "request": {"key": key, "value": {"full": True}}},
                {
                    "operation": "upsert",
                    "request": {
                        "key": key,
                        "value": {"projected": key},
                        "metadata": {
                            "outbox.projection": "true",
                            "contentType": "application/json",
                        },
                    },
                },
            ]
        },
    )
    assert response.status_code == 204, response.text
    assert http.get(f"/v1.0/state/{store}/{key}").json() == {"full": True}
    wait_until(lambda: delivered(app, "/events/outbox", key), timeout=15)
    assert delivered(app, "/events/outbox", key)[0]["event"]["data"] == {"projected": key}

    # A transaction that fails (stale etag) must not announce anything.
    http.post(f"/v1.0/state/{store}", json=[{"key": failed_key, "value": 1}])
    stale = http.post(
        f"/v1.0/state/{store}/transaction",
        json={
            "operations": [
                {
                    "operation": "upsert",
                    "request": {"key": failed_key, "value": {"x": failed_key}, "etag": "999"},
                }
            ]
        },
    )
    assert stale.status_code == 500
    assert stale.json()["errorCode"] == "ERR_STATE_TRANSACTION"
    # A later successful outbox event proves the consumer went past the failed one.
    later = unique("later")
    http.post(
        f"/v1.0/state/{store}/transaction",
        json={"operations": [{"operation": "upsert", "request": {"key": later, "value": later}}]},
    )
    wait_until(lambda: delivered(app, "/events/outbox", later), timeout=15)
    assert not delivered(app, "/events/outbox", failed_key)


def _record_and_projection(key: str, projection_first: bool) -> list[dict[str, Any]]:
    record = {"operation": "upsert", "request": {"key": key, "value": {"full": key}}}
    projection = {
        "operation": "upsert",
        "request": {
            "key": key,
            "value": {"projected": key},
            "metadata": {"outbox.projection": "true", "contentType": "application/json"},
        },
    }
    return [projection, record] if projection_first else [record, projection]


@OUTBOX_STORES
def test_projections_of_several_keys_are_taken_as_daprd_takes_them(
    sidecar: Sidecar, app: TinyApp, store: str
) -> None:
    """daprd 1.18.3 removes projections from the operations while ranging over them, so with
    each record ahead of its projection a transaction of two keys panics it (slice bounds out
    of range: the process dies); here the call fails and stores nothing. With each projection
    ahead of its record, every key is stored and announced with its projection."""
    first, second = unique("panics-a"), unique("panics-b")
    ops = _record_and_projection(first, False) + _record_and_projection(second, False)
    with httpx.Client(base_url=sidecar.http, timeout=10) as http:
        refused = http.post(f"/v1.0/state/{store}/transaction", json={"operations": ops})
        assert refused.status_code == 500, refused.text
        assert refused.json()["errorCode"] == "ERR_STATE_TRANSACTION"
        assert "slice bounds out of range [4:2]" in refused.json()["message"]
        assert http.get(f"/v1.0/state/{store}/{first}").status_code == 204

        keys = [unique("reads-right") for _ in range(3)]
        ops = [op for key in keys for op in _record_and_projection(key, True)]
        answer = http.post(f"/v1.0/state/{store}/transaction", json={"operations": ops})
        assert answer.status_code == 204, answer.text
        for key in keys:
            assert http.get(f"/v1.0/state/{store}/{key}").json() == {"full": key}
    for key in keys:
        wait_until(lambda key=key: delivered(app, "/events/outbox", key), timeout=15)
        assert delivered(app, "/events/outbox", key)[0]["event"]["data"] == {"projected": key}
    assert not delivered(app, "/events/outbox", first)


@OUTBOX_STORES
def test_outbox_announces_exactly_what_a_partly_applied_redis_transaction_stored(
    sidecar: Sidecar, app: TinyApp, store: str
) -> None:
    """state.redis is not atomic: a stale etag fails its own upsert and the others are stored.

    The stored ones must be announced (no gap) and the failed one not (no stray event).
    """
    stored_key, stale_key = unique("stored"), unique("stale")
    http = httpx.Client(base_url=sidecar.http, timeout=10)
    http.post(f"/v1.0/state/{store}", json=[{"key": stale_key, "value": 1}])
    answer = http.post(
        f"/v1.0/state/{store}/transaction",
        json={
            "operations": [
                {
                    "operation": "upsert",
                    "request": {"key": stale_key, "value": {"x": stale_key}, "etag": "999"},
                },
                {"operation": "upsert", "request": {"key": stored_key, "value": stored_key}},
            ]
        },
    )
    assert answer.status_code == 500
    assert answer.json()["errorCode"] == "ERR_STATE_TRANSACTION"
    assert http.get(f"/v1.0/state/{store}/{stored_key}").json() == stored_key
    assert http.get(f"/v1.0/state/{store}/{stale_key}").json() == 1
    wait_until(lambda: delivered(app, "/events/outbox", stored_key), timeout=15)
    later = unique("later")
    http.post(
        f"/v1.0/state/{store}/transaction",
        json={"operations": [{"operation": "upsert", "request": {"key": later, "value": later}}]},
    )
    wait_until(lambda: delivered(app, "/events/outbox", later), timeout=15)
    assert not delivered(app, "/events/outbox", stale_key)


@pytest.mark.parametrize(("store", "relayed"), [("redisstore", False), ("relaystore", True)])
def test_outbox_takes_the_direct_path_only_on_the_pubsubs_own_redis(
    sidecar: Sidecar, app: TinyApp, redis_server: RedisServer, store: str, relayed: bool
) -> None:
    """On the pubsub's Redis and database the write's script appends the event itself, so no
    internal message is published; anywhere else daprd's internal topic carries it."""
    # daprd's name: NAMESPACE, "default" when unset, then app id, topic and "outbox".
    internal = f"default{sidecar.app_id}outbox-eventsoutbox"
    broker = redis.Redis(port=redis_server.port)
    try:
        before = broker.xlen(internal)
        key = unique(f"path-{store}")
        answer = httpx.post(
            f"{sidecar.http}/v1.0/state/{store}/transaction",
            json={"operations": [{"operation": "upsert", "request": {"key": key, "value": key}}]},
            timeout=10,
        )
        assert answer.status_code == 204, answer.text
        wait_until(lambda: delivered(app, "/events/outbox", key), timeout=15)
        assert broker.xlen(internal) - before == (1 if relayed else 0)
    finally:
        broker.close()


async def test_bulk_publish_gives_request_metadata_only_to_entries_with_their_own(
    conformance: Conformance,
) -> None:
    """daprd merges the request's metadata into an entry only when the entry has metadata
    (``if entry.Metadata != nil``): over HTTP an empty object counts, over gRPC an empty map is
    no map at all. An entry without gets neither the request's TTL nor its overrides."""
    marker, car = unique("bulk-meta"), conformance.sidecar
    request_meta = {"cloudevent.type": "from.request", "ttlInSeconds": "120"}
    own = {"cloudevent.subject": "own"}
    entries: list[tuple[str, dict[str, str] | None]] = [
        ("none", None),
        ("empty", {}),
        ("own", own),
    ]
    http_entries = [
        {
            "entryId": entry_id,
            "event": f"http-{entry_id} {marker}",
            "contentType": "text/plain",
            **({} if meta is None else {"metadata": meta}),
        }
        for entry_id, meta in entries
    ]
    async with httpx.AsyncClient(base_url=car.http, timeout=10) as http:
        answer = await http.post(
            "/v1.0-alpha1/publish/bulk/redispubsub/conf",
            json=http_entries,
            params={f"metadata.{k}": v for k, v in request_meta.items()},
        )
    assert answer.status_code == 204, answer.text
    request = pubsub_pb2.BulkPublishRequest(
        pubsub_name="redispubsub",
        topic="conf",
        metadata=request_meta,
        entries=[
            pubsub_pb2.BulkPublishRequestEntry(
                entry_id=entry_id,
                event=f"grpc-{entry_id} {marker}".encode(),
                content_type="text/plain",
                metadata=meta,
            )
            for entry_id, meta in entries
        ],
    )
    with grpc.insecure_channel(car.grpc_address) as channel:
        dapr_pb2_grpc.DaprStub(channel).BulkPublishEventAlpha1(request, timeout=10)
    events = {
        e["data"].split()[0]: e for e in wait_for(conformance.app, "/events/redispubsub", marker, 6)
    }
    merged = {"http-empty", "http-own", "grpc-own"}
    for name, event in events.items():
        assert event["type"] == ("from.request" if name in merged else "com.dapr.event.sent")
        assert ("expiration" in event) is (name in merged), name
        assert (event.get("subject") == "own") is name.endswith("-own"), name


async def test_published_cloudevent_keeps_its_own_trace_fields(conformance: Conformance) -> None:
    """contrib's FromCloudEvent adds the request's traceid and traceparent only when the event
    has no traceid, and its tracestate only when the event has none."""
    marker, trace_id = unique("ce-trace"), "0af7651916cd43dd8448eb211c80319c"
    request_trace = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01", "tracestate": "req=1"}
    events = {
        "own": {"traceid": "own-id", "traceparent": "own-parent", "tracestate": "own=1"},
        "parent-only": {"traceparent": "own-parent"},
        "state-only": {"tracestate": "own=1"},
    }
    async with httpx.AsyncClient(base_url=conformance.sidecar.http, timeout=10) as http:
        for name, fields in events.items():
            body = {"id": f"{name}-{marker}", "data": marker, "specversion": "1.0", **fields}
            answer = await http.post(
                "/v1.0/publish/redispubsub/conf",
                json=body,
                headers={"Content-Type": "application/cloudevents+json", **request_trace},
            )
            assert answer.status_code == 204, answer.text
    got = {
        e["id"].removesuffix(f"-{marker}"): e
        for e in wait_for(conformance.app, "/events/redispubsub", marker, 3)
    }
    own = got["own"]
    assert (own["traceid"], own["traceparent"], own["tracestate"]) == (
        "own-id",
        "own-parent",
        "own=1",
    )
    for name in ("parent-only", "state-only"):
        event = got[name]
        assert event["traceid"] == event["traceparent"], event
        assert event["traceparent"].split("-")[1] == trace_id, event
    assert got["parent-only"]["tracestate"] == "req=1"
    assert got["state-only"]["tracestate"] == "own=1"


async def test_publish_reads_raw_payload_as_gos_parse_bool(
    api: Api, pubsub: str, conformance: Conformance
) -> None:
    """contrib's IsRawPayload: strconv.ParseBool, so ``t`` is true, and a value it refuses
    fails the publish with daprd's ERR_PUBSUB_REQUEST_METADATA."""
    raw = unique(f"parse-bool-{api.name}").encode()
    await api.publish(pubsub, "conf-raw", raw, "text/plain", {"rawPayload": "t"})
    encoded = base64.b64encode(raw).decode()
    (event,) = wait_for(conformance.app, f"/events/raw-{pubsub}", encoded)
    assert event["data_base64"] == encoded
    refused = await fails(api.publish(pubsub, "conf", b"x", "text/plain", {"rawPayload": "yes"}))
    refused.expect(
        http=(400, "ERR_PUBSUB_REQUEST_METADATA"),
        grpc=("INVALID_ARGUMENT", "DAPR_PUBSUB_METADATA_DESERIALIZATION"),
    )
    assert "rawPayload value must be a valid boolean: actual is 'yes'" in refused.message
    bulk = await fails(api.bulk_publish(pubsub, "conf", ["x"], {"rawPayload": "yes"}))
    bulk.expect(
        http=(400, "ERR_PUBSUB_REQUEST_METADATA"),
        grpc=("INVALID_ARGUMENT", "DAPR_PUBSUB_METADATA_DESERIALIZATION"),
    )


def raw_bodies(app: TinyApp, path: str, marker: str) -> list[str]:
    return [r["raw"] for r in app.received() if r["path"] == path and marker in r["raw"]]


async def test_published_json_is_written_as_daprds_encoding_json_writes_it(
    api: Api, pubsub: str, conformance: Conformance
) -> None:
    """daprd marshals the envelope, a Go map, with encoding/json: keys sorted, ``<``, ``>``
    and ``&`` escaped, and the data's numbers as sent (contrib's unmarshalPrecise keeps their
    text). A subscriber gets those bytes."""
    marker = unique(f"gojson-{api.name}")
    data = f'{{"z": 1.0, "m": "{marker}", "a": 10.10, "h": "<&>", "e": 1E2}}'
    await api.publish(pubsub, "conf", data.encode(), "application/json", {})
    wait_for(conformance.app, f"/events/{pubsub}", marker)
    (raw,) = raw_bodies(conformance.app, f"/events/{pubsub}", marker)
    written = f'"data":{{"a":10.10,"e":1E2,"h":"\\u003c\\u0026\\u003e","m":"{marker}","z":1.0}}'
    assert written in raw
    keys = re.findall(r'(?:^\{|,)"([a-z]+)":', raw.replace(written, '"data":0'))
    assert keys == sorted(keys) and "datacontenttype" in keys and "traceparent" in keys


async def test_http_bulk_publish_json_events_are_go_values(conformance: Conformance) -> None:
    """daprd decodes a bulk publish body without UseNumber: a JSON event's numbers become
    float64s before it is marshalled as the entry's data; one no float64 holds is refused."""
    marker, car = unique("bulk-json"), conformance.sidecar
    event = f'{{"m":"{marker}","x":1.0,"p":10.10}}'
    body = f'[{{"entryId":"1","contentType":"application/json","event":{event}}}]'
    async with httpx.AsyncClient(base_url=car.http, timeout=10) as http:
        answer = await http.post("/v1.0-alpha1/publish/bulk/redispubsub/conf", content=body)
        assert answer.status_code == 204, answer.text
        refused = await http.post(
            "/v1.0-alpha1/publish/bulk/redispubsub/conf",
            content=b'[{"entryId":"1","contentType":"application/json","event":{"x":1e400}}]',
        )
    assert refused.status_code == 400, refused.text
    assert "cannot unmarshal number 1e400 into Go struct field" in refused.json()["message"]
    wait_for(conformance.app, "/events/redispubsub", marker)
    (raw,) = raw_bodies(conformance.app, "/events/redispubsub", marker)
    assert f'"data":{{"m":"{marker}","p":10.1,"x":1}}' in raw


@OUTBOX_STORES
def test_outbox_events_carry_the_numbers_daprds_relay_reads_back(
    sidecar: Sidecar, app: TinyApp, sdk_http_port: int, store: str
) -> None:
    """daprd's relay reads the internal event back with json.Unmarshal (float64 numbers) and
    marshals it again: keys sorted, ``1.0`` written ``1``, ``10.10`` written ``10.1``."""
    key = unique("numbers")
    value = f'{{"job": "{key}", "price": 10.10, "count": 1.0, "tag": "<b>", "big": 1e21}}'
    save_announced(sidecar, store, key, value)
    wait_until(lambda: raw_bodies(app, "/events/created", key), timeout=15)
    (raw,) = raw_bodies(app, "/events/created", key)
    assert (
        f'"data":{{"big":1e+21,"count":1,"job":"{key}","price":10.1,"tag":"\\u003cb\\u003e"}}'
        in raw
    )
