"""Dead letters of a real sidecar delivering to a real app: an app's 404 is a drop, and a
subscription whose rawPayload Go's ParseBool refuses fails every message (contract section 5)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.procs import wait_until
from tests.sidecar.api.conftest import Sidecar, TinyApp, unique

APP_ID = "dead-letter-app"
GRAVEYARD = "graveyard"


def subscriptions() -> list[dict[str, Any]]:
    return [
        {"pubsubname": "pubsub", "topic": GRAVEYARD, "route": "/events/graveyard"},
        {
            "pubsubname": "pubsub",
            "topic": "gone",
            "route": "/status/404",
            "deadLetterTopic": GRAVEYARD,
        },
        {
            "pubsubname": "pubsub",
            "topic": "gone-bulk",
            "route": "/status/404",
            "deadLetterTopic": GRAVEYARD,
            "bulkSubscribe": {"enabled": True, "maxAwaitDurationMs": 10},
        },
        {
            "pubsubname": "pubsub",
            "topic": "bad-raw",
            "route": "/events/bad-raw",
            "deadLetterTopic": GRAVEYARD,
            "metadata": {"rawPayload": "yes"},
        },
        {
            "pubsubname": "pubsub",
            "topic": "short-raw",
            "route": "/events/short-raw",
            "metadata": {"rawPayload": "t"},
        },
    ]


@pytest.fixture(scope="module")
def dead_app(workdir: Path) -> Iterator[TinyApp]:
    tiny = TinyApp(subscriptions(), workdir).start()
    yield tiny
    tiny.proc.stop()


@pytest.fixture(scope="module")
def dead_sidecar(
    resources: Path, registry: Path, dead_app: TinyApp, workdir: Path
) -> Iterator[Sidecar]:
    car = Sidecar(APP_ID, resources, registry, app_port=dead_app.port, log_dir=workdir).start()
    yield car
    car.stop()


def publish(sidecar: Sidecar, topic: str, marker: str) -> None:
    answer = httpx.post(
        f"{sidecar.http}/v1.0/publish/pubsub/{topic}", json={"m": marker}, timeout=10
    )
    assert answer.status_code == 204, answer.text


def received(app: TinyApp, path: str, marker: str) -> list[dict[str, Any]]:
    return [r["event"] for r in app.received() if r["path"] == path and marker in json.dumps(r)]


def buried(app: TinyApp, marker: str) -> list[dict[str, Any]]:
    return received(app, "/events/graveyard", marker)


def test_an_apps_404_sends_the_event_to_the_dead_letter_topic(
    dead_sidecar: Sidecar, dead_app: TinyApp
) -> None:
    """daprd's HTTP postman answers a 404 with ErrMessageDropped, and the subscription sends
    every dropped message to its deadLetterTopic (the original event, its topic unchanged)."""
    marker = unique("gone")
    publish(dead_sidecar, "gone", marker)
    wait_until(lambda: bool(buried(dead_app, marker)), timeout=15)
    (event,) = buried(dead_app, marker)
    assert (event["topic"], event["data"]) == ("gone", {"m": marker})


def test_a_bulk_404_is_acknowledged_without_dead_letter(
    dead_sidecar: Sidecar, dead_app: TinyApp, redis_server: RedisServer
) -> None:
    """daprd's bulk postman answers a 404 with no error for any entry: all are acknowledged."""
    marker = unique("gone-bulk")
    publish(dead_sidecar, "gone-bulk", marker)
    with redis.Redis(port=redis_server.port) as broker:

        def settled() -> bool:
            groups: Any = broker.xinfo_groups("gone-bulk")
            group = next(g for g in groups if g["name"].decode() == APP_ID)
            return int(group["pending"]) == 0 and group["last-delivered-id"] != b"0-0"

        wait_until(settled, timeout=15)
    # Dead letters are sent before the message is acknowledged: none will come now.
    assert buried(dead_app, marker) == []


def test_an_unreadable_raw_payload_setting_dead_letters_every_message(
    dead_sidecar: Sidecar, dead_app: TinyApp
) -> None:
    """contrib's IsRawPayload refuses what Go's strconv.ParseBool refuses ("yes"): daprd logs it
    and sends the message to the dead letter topic without calling the app."""
    marker = unique("bad-raw")
    publish(dead_sidecar, "bad-raw", marker)
    wait_until(lambda: bool(buried(dead_app, marker)), timeout=15)
    assert buried(dead_app, marker)[0]["topic"] == "bad-raw"
    assert received(dead_app, "/events/bad-raw", marker) == []


def test_a_raw_payload_setting_is_read_as_gos_parse_bool(
    dead_sidecar: Sidecar, dead_app: TinyApp
) -> None:
    """``t`` is true to strconv.ParseBool: the app gets the published bytes wrapped as a raw
    payload (data_base64), not the CloudEvent."""
    marker = unique("short-raw")
    publish(dead_sidecar, "short-raw", marker)

    def wrapped() -> list[dict[str, Any]]:
        events = [r["event"] for r in dead_app.received() if r["path"] == "/events/short-raw"]
        return [e for e in events if marker.encode() in _decoded(e)]

    wait_until(lambda: bool(wrapped()), timeout=15)
    (event,) = wrapped()
    assert event["datacontenttype"] == "application/octet-stream"
    assert "data" not in event


def _decoded(event: dict[str, Any]) -> bytes:
    return base64.b64decode(event.get("data_base64", ""))
