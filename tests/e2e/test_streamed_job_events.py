"""The README's "your own service" without an HTTP server: job events over a streaming
subscription (the SDK's ``DaprClient.subscribe``), on the shipped components.

As the README says, the service's app id is added to ``subscriptionScopes`` in
``components/pubsub.yaml``; an app id not listed there is refused the stream.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RedisServer
from tests.microservice_x.stack import App, Sidecar, http, running_pair, write_components

#: This module's own Redis database (see write_components).
REDIS_DB = 6
WORKER = "my-worker"

pytestmark = pytest.mark.e2e


def grant_subscription(components: Path, app_id: str) -> None:
    """The README's step: `;<app id>=job-events` appended to the pubsub's subscriptionScopes."""
    path = components / "pubsub.yaml"
    doc = yaml.safe_load(path.read_text())
    for item in doc["spec"]["metadata"]:
        if item["name"] == "subscriptionScopes":
            item["value"] += f";{app_id}=job-events"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[App, Sidecar, Sidecar]]:
    base = tmp_path_factory.mktemp("streamed-events")
    components = write_components(base / "components", redis_server.host, REDIS_DB)
    grant_subscription(components, WORKER)
    with running_pair(components, base) as (orchestrator, _):
        worker = Sidecar(WORKER, components, base / "registry", log_dir=base).start()
        stranger = Sidecar("stranger", components, base / "registry", log_dir=base).start()
        try:
            worker.wait_ready()
            stranger.wait_ready()
            yield orchestrator, worker, stranger
        finally:
            stranger.stop()
            worker.stop()


def client_for(car: Sidecar, monkeypatch: pytest.MonkeyPatch) -> Any:
    from dapr.clients import DaprClient
    from dapr.conf import settings

    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", car.http_port)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
    monkeypatch.setattr(settings, "DAPR_HTTP_ENDPOINT", None)
    return DaprClient(address=f"127.0.0.1:{car.grpc_port}")


def test_a_service_follows_a_job_over_a_streaming_subscription(
    stack: tuple[App, Sidecar, Sidecar], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every change of the job reaches the stream, with its sequence.

    Order is not promised: the SDK 1.18.3 can end its own stream just after opening it (see
    tests/sidecar/api/test_streaming_subscriptions.py), and what that stream was handed comes
    again on the next one after `processingTimeout` (2 s here), after later events. So the events
    are gathered until every sequence up to the final one has come, duplicates allowed.
    """
    orchestrator, worker, _ = stack
    events: dict[int, tuple[str, dict[str, Any]]] = {}
    with client_for(worker, monkeypatch) as client:
        subscription = client.subscribe("pubsub", "job-events")
        status, _, job = http(
            "POST",
            f"{orchestrator.url}/Jobs/StartJobWithTimeout",
            {"input": {"seconds": 0.2}, "owner": WORKER, "timeoutSeconds": 10},
        )
        assert status == 200, job
        every = set(range(1, job["sequence"] + 1))

        def follow() -> None:
            for message in subscription:
                if message is None:
                    continue
                subscription.respond_success(message)
                data = message.data()
                if data["id"] == job["id"]:
                    events[data["sequence"]] = (message.type(), data)
                    if set(events) >= every:
                        return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        reader.join(timeout=20)
        subscription.close()
        reader.join(timeout=5)
    assert set(events) == every, sorted(events)  # no gap, nothing after the final change
    types = [events[sequence][0] for sequence in sorted(events)]
    assert types[0] == "job.created" and types[-1] == "job.completed", types
    assert set(types[1:-1]) <= {"job.updated"}, types
    final = events[job["sequence"]][1]
    assert final["owner"] == WORKER and final["status"] == "Completed"


def test_an_app_not_in_subscription_scopes_is_refused_the_stream(
    stack: tuple[App, Sidecar, Sidecar], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, stranger = stack
    with client_for(stranger, monkeypatch) as client:
        with pytest.raises(Exception, match="is not allowed"):
            client.subscribe("pubsub", "job-events")
