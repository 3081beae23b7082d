"""Publishing through a real sidecar (HTTP and SDK gRPC), delivery to a real app, the outbox."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation

from tests.procs import wait_until
from tests.sidecar.api.conftest import Sidecar, TinyApp, unique


def delivered(app: TinyApp, path: str, marker: str) -> list[dict[str, Any]]:
    return [r for r in app.received() if r["path"] == path and marker in json.dumps(r["event"])]


def test_http_publish_is_delivered_as_cloudevent(sidecar: Sidecar, app: TinyApp) -> None:
    marker = unique("order")
    response = httpx.post(
        f"{sidecar.http}/v1.0/publish/pubsub/api-orders",
        json={"order": marker},
        timeout=10,
    )
    assert response.status_code == 204, response.text
    wait_until(lambda: delivered(app, "/events/orders", marker), timeout=15)
    record = delivered(app, "/events/orders", marker)[0]
    event = record["event"]
    assert record["content_type"] == "application/cloudevents+json"
    assert event["data"] == {"order": marker}
    assert event["source"] == "api-app"
    assert event["type"] == "com.dapr.event.sent"
    assert event["topic"] == "api-orders"
    assert event["pubsubname"] == "pubsub"
    assert event["specversion"] == "1.0"


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


def test_http_publish_errors(sidecar: Sidecar) -> None:
    unknown = httpx.post(f"{sidecar.http}/v1.0/publish/nosuch/topic", content=b"x")
    assert unknown.status_code == 404
    assert unknown.json()["errorCode"] == "ERR_PUBSUB_NOT_FOUND"
    empty = httpx.post(f"{sidecar.http}/v1.0/publish/pubsub/", content=b"x")
    assert empty.status_code == 404
    assert empty.json()["errorCode"] == "ERR_TOPIC_NAME_EMPTY"


def test_http_bulk_publish(sidecar: Sidecar, app: TinyApp) -> None:
    marker = unique("bulk")
    entries = [
        {"entryId": "1", "event": {"n": 1, "m": marker}, "contentType": "application/json"},
        {"entryId": "2", "event": f"text {marker}", "contentType": "text/plain"},
    ]
    response = httpx.post(
        f"{sidecar.http}/v1.0-alpha1/publish/bulk/pubsub/api-orders", json=entries, timeout=10
    )
    assert response.status_code == 204, response.text
    wait_until(lambda: len(delivered(app, "/events/orders", marker)) == 2, timeout=15)


def test_grpc_publish_through_sdk(sidecar: Sidecar, app: TinyApp, sdk_http_port: int) -> None:
    marker = unique("grpc")
    with DaprClient(address=sidecar.grpc_address) as client:
        client.publish_event(
            "pubsub",
            "api-orders",
            json.dumps({"m": marker}),
            data_content_type="application/json",
            publish_metadata={"cloudevent.type": "custom.type"},
        )
        with pytest.raises(DaprGrpcError) as unknown:
            client.publish_event("nosuch", "api-orders", b"x")
        assert unknown.value.error_code() == "DAPR_PUBSUB_NOT_FOUND"
        bulk = client.publish_events(
            "pubsub",
            "api-orders",
            [f"one {marker}", f"two {marker}"],
            data_content_type="text/plain",
        )
        assert bulk.failed_entries == []
    wait_until(lambda: len(delivered(app, "/events/orders", marker)) == 3, timeout=15)
    events = [r["event"] for r in delivered(app, "/events/orders", marker)]
    assert {e["type"] for e in events if isinstance(e["data"], dict)} == {"custom.type"}
    assert sorted(e["data"] for e in events if isinstance(e["data"], str)) == [
        f"one {marker}",
        f"two {marker}",
    ]


def test_outbox_transaction_publishes_after_commit(
    sidecar: Sidecar, app: TinyApp, sdk_http_port: int
) -> None:
    """A transaction on the outbox store is stored and announced, with overridden fields."""
    key = unique("job")
    with DaprClient(address=sidecar.grpc_address) as client:
        client.execute_state_transaction(
            "redisstore",
            [
                TransactionalStateOperation(
                    key=key,
                    data=json.dumps({"job": key, "status": "created"}),
                    metadata={
                        "contentType": "application/json",
                        "cloudevent.type": "job.created",
                        "cloudevent.subject": key,
                    },
                )
            ],
        )
        assert json.loads(client.get_state("redisstore", key).data)["status"] == "created"
    wait_until(lambda: delivered(app, "/events/created", key), timeout=15)
    event = delivered(app, "/events/created", key)[0]["event"]
    assert event["type"] == "job.created"
    assert event["subject"] == key
    assert event["data"] == {"job": key, "status": "created"}
    assert event["id"].startswith("outbox-")
    assert event["topic"] == "outbox-events"


def test_outbox_projection_and_failed_transaction(sidecar: Sidecar, app: TinyApp) -> None:
    key, failed_key = unique("proj"), unique("failed")
    http = httpx.Client(base_url=sidecar.http, timeout=10)
    response = http.post(
        "/v1.0/state/redisstore/transaction",
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
    assert http.get(f"/v1.0/state/redisstore/{key}").json() == {"full": True}
    wait_until(lambda: delivered(app, "/events/outbox", key), timeout=15)
    assert delivered(app, "/events/outbox", key)[0]["event"]["data"] == {"projected": key}

    # A transaction that fails (stale etag) must not announce anything.
    http.post("/v1.0/state/redisstore", json=[{"key": failed_key, "value": 1}])
    stale = http.post(
        "/v1.0/state/redisstore/transaction",
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
        "/v1.0/state/redisstore/transaction",
        json={"operations": [{"operation": "upsert", "request": {"key": later, "value": later}}]},
    )
    wait_until(lambda: delivered(app, "/events/outbox", later), timeout=15)
    assert not delivered(app, "/events/outbox", failed_key)
