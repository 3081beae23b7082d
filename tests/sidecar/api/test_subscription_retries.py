"""A subscription whose component cannot start it, as daprd 1.18's subscriber handles one: the
sidecar logs it, stays ready and serving, and retries in the background (500 ms growing by 1.5,
at most 60 s apart, without end) until the component takes it; then events flow.

The failures are real: Redis stopped while the subscription starts, or the topic's key holding
another type than a stream (contrib's XGROUP CREATE then fails with WRONGTYPE).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.procs import ManagedProcess, wait_until
from tests.sidecar.api.conftest import Sidecar, TinyApp, component, unique

TAG = os.urandom(3).hex()


def resources(folder: Path, redis_server: RedisServer) -> Path:
    folder.mkdir()
    docs = [
        component("memstore", "state.in-memory"),
        component("pubsub", "pubsub.redis", {"redisHost": redis_server.host}),
    ]
    (folder / "components.yaml").write_text("\n---\n".join(docs))
    return folder


@pytest.fixture()
def procs() -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def delivered(app: TinyApp, marker: str) -> bool:
    return any(r["event"].get("data", {}).get("m") == marker for r in app.received())


def publish(car: Sidecar, topic: str, marker: str) -> None:
    answer = httpx.post(f"{car.http}/v1.0/publish/pubsub/{topic}", json={"m": marker}, timeout=10)
    assert answer.status_code == 204, answer.text


def assert_serving(car: Sidecar, topic: str) -> None:
    """Alive, ready, and the metadata API lists the subscription that has not started."""
    car.proc.check_alive()
    assert httpx.get(f"{car.http}/v1.0/healthz", timeout=10).status_code == 204
    body = httpx.get(f"{car.http}/v1.0/metadata", timeout=10).json()
    assert [s["topic"] for s in body.get("subscriptions", [])] == [topic]


def test_a_subscription_is_retried_while_redis_is_down(
    procs: list[ManagedProcess], workdir: Path, registry: Path, own_redis: RedisServer
) -> None:
    topic = f"retried-{TAG}"
    folder = resources(workdir / "retry-redis-down", own_redis)
    route = [{"pubsubname": "pubsub", "topic": topic, "route": "/events/retried"}]
    app = TinyApp(route, workdir)  # not started yet: the sidecar waits for it
    car = Sidecar(unique("retrier"), folder, registry, app_port=app.port, log_dir=workdir)
    procs.append(car.proc)
    car.start(wait="/v1.0/healthz/outbound")  # components loaded, Redis up
    own_redis.stop()
    procs.append(app.proc)
    app.start()  # the sidecar now subscribes, and Redis refuses

    retried = "Retry failed for subscription pubsub pubsub"
    wait_until(lambda: car.proc.log_tail(100_000).count(retried) >= 2, timeout=20)
    assert_serving(car, topic)
    own_redis.restart()
    recovered = "Successfully started subscription after retry"
    wait_until(lambda: recovered in car.proc.log_tail(), timeout=30)
    marker = unique("after-restart")
    publish(car, topic, marker)
    wait_until(lambda: delivered(app, marker), timeout=15)
    log = car.proc.log_tail(100_000)
    assert f"Failed to start subscription for pubsub pubsub, topic {topic}" in log
    assert "failed to subscribe to topics" in log


def test_a_topic_key_of_another_type_is_retried_until_it_is_gone(
    procs: list[ManagedProcess], workdir: Path, registry: Path, redis_server: RedisServer
) -> None:
    topic = f"wrongtype-{TAG}"
    with redis.Redis(port=redis_server.port) as broker:
        broker.set(topic, "not a stream")
    folder = resources(workdir / "retry-wrong-type", redis_server)
    route = [{"pubsubname": "pubsub", "topic": topic, "route": "/events/wrongtype"}]
    app = TinyApp(route, workdir)
    procs.append(app.proc)
    app.start()
    car = Sidecar(unique("wrongtype"), folder, registry, app_port=app.port, log_dir=workdir)
    procs.append(car.proc)
    car.start()

    wait_until(lambda: "WRONGTYPE" in car.proc.log_tail() or not car.proc.alive(), timeout=20)
    assert_serving(car, topic)
    with redis.Redis(port=redis_server.port) as broker:
        broker.delete(topic)
    marker = unique("after-fix")
    publish(car, topic, marker)
    wait_until(lambda: delivered(app, marker), timeout=30)
