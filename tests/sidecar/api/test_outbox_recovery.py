"""The outbox loses nothing when the sidecar dies between commit and publish.

The state such a crash leaves is made for real through public APIs: the committed marker row
(saved by another sidecar on a store with ``keyPrefix: none``) and the internal message on the
app's internal topic (published raw). A sidecar of that app then starting must relay the event,
whether the message is daprd's (the CloudEvent, its id the marker's key) or one an earlier
release of this sidecar left there (``{"marker": key, "event": CloudEvent}``): an upgrade
loses none.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidecar.outbox import internal_topic
from tests.conftest import RedisServer
from tests.procs import wait_until
from tests.sidecar.api.conftest import Sidecar, TinyApp, component


@pytest.fixture(scope="module")
def outbox_resources(workdir: Path, redis_server: RedisServer) -> Path:
    folder = workdir / "outbox-resources"
    folder.mkdir()
    store = component(
        "crashstore",
        "state.redis",
        {
            "redisHost": redis_server.host,
            "keyPrefix": "none",
            "outboxPublishPubsub": "pubsub",
            "outboxPublishTopic": "recovered-events",
        },
    )
    pubsub = component("pubsub", "pubsub.redis", {"redisHost": redis_server.host})
    (folder / "c.yaml").write_text(store + "---\n" + pubsub)
    return folder


@pytest.fixture(scope="module")
def writer(outbox_resources: Path, registry: Path, workdir: Path) -> Iterator[Sidecar]:
    car = Sidecar("outbox-writer", outbox_resources, registry, log_dir=workdir).start()
    yield car
    car.stop()


@pytest.mark.parametrize("left_by", ["daprd", "earlier sidecar"])
def test_relay_after_crash(
    outbox_resources: Path, registry: Path, workdir: Path, writer: Sidecar, left_by: str
) -> None:
    marker = f"outbox-{uuid.uuid4()}"
    event = {
        "id": marker,
        "specversion": "1.0",
        "source": "recovering",
        "type": "job.updated",
        "datacontenttype": "application/json",
        "data": {"job": marker},
    }
    saved = httpx.post(
        f"{writer.http}/v1.0/state/crashstore", json=[{"key": marker, "value": "0"}], timeout=10
    )
    assert saved.status_code == 204
    topic = internal_topic("recovering", "recovered-events", "default")
    message = event if left_by == "daprd" else {"marker": marker, "event": event}
    published = httpx.post(
        f"{writer.http}/v1.0/publish/pubsub/{topic}?metadata.rawPayload=true",
        content=json.dumps(message),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert published.status_code == 204

    app = TinyApp(
        [{"pubsubname": "pubsub", "topic": "recovered-events", "route": "/events/recovered"}],
        workdir,
    ).start()
    car = Sidecar("recovering", outbox_resources, registry, app_port=app.port, log_dir=workdir)
    try:
        car.start()
        wait_until(lambda: any(r["event"]["id"] == marker for r in app.received()), timeout=20)
        relayed = next(r["event"] for r in app.received() if r["event"]["id"] == marker)
        assert relayed["data"] == {"job": marker}
        assert relayed["topic"] == "recovered-events"
        # The marker is removed once the event is out.
        wait_until(
            lambda: httpx.get(f"{writer.http}/v1.0/state/crashstore/{marker}").status_code == 204
        )
    finally:
        car.stop()
        app.proc.stop()
