"""daprd's state and pub/sub component metrics on the sidecar's metrics port, from a real process.

State calls, publishes and deliveries go through the real APIs to Redis and a tiny app; the
metrics are then scraped over HTTP and read line by line, as Prometheus would.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidecar.config import parse_config
from tests.procs import PYTHON, free_port
from tests.sidecar.api.conftest import Sidecar, TinyApp
from tests.sidecar.api.scrape import scrape, value

SUFFIX = uuid.uuid4().hex[:8]
OK, GONE, FAILING = f"m-ok-{SUFFIX}", f"m-gone-{SUFFIX}", f"m-fail-{SUFFIX}"


@pytest.fixture(scope="module")
def metrics_app(workdir: Path) -> Iterator[TinyApp]:
    subscriptions = [
        {"pubsubname": "pubsub", "topic": OK, "route": "/events/ok"},
        {"pubsubname": "pubsub", "topic": GONE, "route": "/status/404"},
        {"pubsubname": "pubsub", "topic": FAILING, "route": "/status/500"},
    ]
    tiny = TinyApp(subscriptions, workdir).start()
    yield tiny
    tiny.proc.stop()


@pytest.fixture(scope="module")
def car(resources: Path, registry: Path, metrics_app: TinyApp, workdir: Path) -> Iterator[Sidecar]:
    started = Sidecar(
        "metrics-app", resources, registry, app_port=metrics_app.port, log_dir=workdir
    ).start(wait="/v1.0/healthz")
    yield started
    started.stop()


def test_state_calls_are_counted_and_timed_per_operation(car: Sidecar) -> None:
    base = f"{car.http}/v1.0/state/redisstore"
    key = f"metrics-{uuid.uuid4().hex}"
    _, before = scrape(car)
    with httpx.Client(timeout=10) as http:
        assert http.post(base, json=[{"key": key, "value": 1}]).status_code == 204
        assert http.get(f"{base}/{key}").status_code == 200
        assert http.post(f"{base}/bulk", json={"keys": [key, "other"]}).status_code == 200
        ops = {"operations": [{"operation": "upsert", "request": {"key": key, "value": 2}}]}
        assert http.post(f"{base}/transaction", json=ops).status_code == 204
        stale = [{"key": key, "value": 3, "etag": "999"}]
        assert http.post(base, json=stale).status_code == 409
        assert http.delete(f"{base}/{key}").status_code == 204
        assert http.get(f"{car.http}/v1.0/state/nosuchstore/{key}").status_code == 400
    text, after = scrape(car)

    common = {"app_id": "metrics-app", "component": "redisstore", "namespace": ""}
    expected = {
        ("get", "true"): 1,
        ("set", "true"): 1,
        ("set", "false"): 1,
        ("bulk_get", "true"): 1,
        ("transaction", "true"): 1,
        ("delete", "true"): 1,
    }
    for (operation, success), count in expected.items():
        labels = {**common, "operation": operation, "success": success}
        grown = value(after, "dapr_component_state_count", **labels) - value(
            before, "dapr_component_state_count", **labels
        )
        assert grown == count, (operation, success)
        timed = value(after, "dapr_component_state_latencies_count", **labels)
        assert timed == value(after, "dapr_component_state_count", **labels)
        assert value(after, "dapr_component_state_latencies_bucket", **labels, le="+Inf") == timed
    # A store that does not exist fails before any store call: nothing is recorded for it.
    assert not any(dict(labels).get("component") == "nosuchstore" for _, labels in after)
    assert (
        "# HELP dapr_component_state_count The number of operations performed on the state "
        "component.\n# TYPE dapr_component_state_count counter\n"
    ) in text
    assert "# TYPE dapr_component_state_latencies histogram\n" in text
    buckets = re.findall(
        r'dapr_component_state_latencies_bucket\{[^}]*operation="get",success="true",le="([^"]+)"',
        text,
    )
    assert buckets[:4] == ["1", "2", "3", "4"] and buckets[-2:] == ["100000", "+Inf"]


def test_publishes_and_deliveries_are_counted_by_outcome(car: Sidecar) -> None:
    with httpx.Client(timeout=10) as http:
        for topic in (OK, GONE, FAILING):
            answer = http.post(f"{car.http}/v1.0/publish/pubsub/{topic}", json={"n": 1})
            assert answer.status_code == 204
        assert http.post(f"{car.http}/v1.0/publish/nosuch/{OK}", json={}).status_code == 404
    common = {"app_id": "metrics-app", "component": "pubsub", "namespace": ""}
    wanted = {
        (OK, "success", "success"): 1.0,
        (GONE, "drop", "drop"): 1.0,
        (FAILING, "retry", "retry"): 1.0,  # at least: it is redelivered until the test ends
    }
    deadline = time.monotonic() + 30
    while True:
        _, samples = scrape(car)
        seen = {
            key: value(
                samples,
                "dapr_component_pubsub_ingress_count",
                **common,
                process_status=key[1],
                status=key[2],
                topic=key[0],
            )
            for key in wanted
        }
        if all(seen[key] >= count for key, count in wanted.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen[(OK, "success", "success")] == 1
    assert seen[(GONE, "drop", "drop")] == 1
    assert seen[(FAILING, "retry", "retry")] >= 1
    for topic in (OK, GONE, FAILING):
        labels = {**common, "success": "true", "topic": topic}
        assert value(samples, "dapr_component_pubsub_egress_count", **labels) == 1
        assert value(samples, "dapr_component_pubsub_egress_latencies_count", **labels) == 1
    assert not any(dict(labels).get("component") == "nosuch" for _, labels in samples)


def test_metrics_can_be_turned_off_and_a_taken_port_stops_startup(
    resources: Path, registry: Path, workdir: Path
) -> None:
    assert parse_config(["--app-id", "a"], {}).metrics_address == ("127.0.0.1", 9090)
    assert parse_config(["--app-id", "a", "--enable-metrics=false"], {}).metrics_address is None
    assert parse_config(["--app-id", "a", "--enable-metrics"], {}).metrics_address is not None
    off = Sidecar("metrics-off", resources, registry, flags=("--enable-metrics=false",)).start()
    try:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{off.metrics_port}/", timeout=2)
    finally:
        off.stop()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _start(resources, registry, http_port=free_port(), metrics_port=port)
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr


def _start(
    resources: Path, registry: Path, *, http_port: int, metrics_port: int
) -> subprocess.CompletedProcess[str]:
    """A sidecar run to its end (expected at startup, as these ports cannot be had)."""
    return subprocess.run(
        [PYTHON, "-m", "sidecar", "--app-id", "metrics-clash", "--resources-path",
         str(resources), "--dapr-http-port", str(http_port), "--dapr-grpc-port",
         str(free_port()), "--metrics-port", str(metrics_port)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "DAPR_LOCAL_REGISTRY_DIR": str(registry)},
    )  # fmt: skip


def test_the_metrics_port_cannot_be_the_http_apis(resources: Path, registry: Path) -> None:
    """The same port for both fails startup, naming it, as daprd fails to bind it twice."""
    port = free_port()
    result = _start(resources, registry, http_port=port, metrics_port=port)
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr


def test_the_api_and_the_metrics_answer_on_their_own_ports(resources: Path, registry: Path) -> None:
    sidecar = Sidecar("metrics-ports", resources, registry).start()
    try:
        api = httpx.get(f"http://127.0.0.1:{sidecar.http_port}/v1.0/healthz", timeout=5)
        scraped = httpx.get(f"http://127.0.0.1:{sidecar.metrics_port}/v1.0/healthz", timeout=5)
    finally:
        sidecar.stop()
    assert api.status_code == 204
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
