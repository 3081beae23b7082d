"""Topic scoping across apps: who may subscribe, and where the outbox and dead letters go.

One ``pubsub.redis`` component protects a topic and scopes five apps: ``writer`` may publish it
(and its outbox's internal topic), ``reader`` may subscribe to it, ``stranger`` is listed nowhere,
``limited`` may publish it but not its outbox's internal topic, ``relayonly`` the internal topic
but not the topic itself. What each sidecar does is checked on the shared Redis.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.procs import wait_until
from tests.sidecar.api.conftest import (
    Sidecar,
    TinyApp,
    component,
    unique,
    upsert_in_transaction,
)

SUFFIX = os.urandom(3).hex()
GUARDED = f"guarded-{SUFFIX}"
OPEN = f"open-{SUFFIX}"
#: Topics whose messages the apps refuse (404), dead-lettered to GUARDED and to OPEN.
REFUSED_GUARDED = f"refused-guarded-{SUFFIX}"
REFUSED_OPEN = f"refused-open-{SUFFIX}"


def internal(app_id: str) -> str:
    """daprd's outbox topic for the store below: NAMESPACE ("default" when unset), app id,
    topic, "outbox"."""
    return f"default{app_id}{GUARDED}outbox"


@dataclass
class Apps:
    writer: Sidecar
    reader: Sidecar
    stranger: Sidecar
    limited: Sidecar
    relayonly: Sidecar
    reader_app: TinyApp
    stranger_app: TinyApp


@pytest.fixture(scope="module")
def apps(workdir: Path, registry: Path, redis_server: RedisServer) -> Iterator[Apps]:
    folder = workdir / "scoped-resources"
    folder.mkdir()
    publishing = ";".join(
        [
            f"writer={GUARDED},{OPEN},{internal('writer')}",
            f"limited={GUARDED}",
            f"relayonly={internal('relayonly')}",
        ]
    )
    docs = [
        component(
            "scoped",
            "pubsub.redis",
            {
                "redisHost": redis_server.host,
                "protectedTopics": GUARDED,
                "publishingScopes": publishing,
                "subscriptionScopes": f"reader={GUARDED},{OPEN},{REFUSED_GUARDED},{REFUSED_OPEN}",
            },
        ),
        component(
            "outboxstore",
            "state.redis",
            {
                "redisHost": redis_server.host,
                "outboxPublishPubsub": "scoped",
                "outboxPublishTopic": GUARDED,
            },
        ),
    ]
    (folder / "c.yaml").write_text("\n---\n".join(docs))
    routes = [
        {"pubsubname": "scoped", "topic": GUARDED, "route": "/events/guarded"},
        {"pubsubname": "scoped", "topic": OPEN, "route": "/events/open"},
        {
            "pubsubname": "scoped",
            "topic": REFUSED_GUARDED,
            "route": "/status/404",
            "deadLetterTopic": GUARDED,
        },
        {
            "pubsubname": "scoped",
            "topic": REFUSED_OPEN,
            "route": "/status/404",
            "deadLetterTopic": OPEN,
        },
    ]
    started: list[Sidecar | TinyApp] = []
    try:
        reader_app = TinyApp(routes, workdir).start()
        started.append(reader_app)
        stranger_app = TinyApp(routes, workdir).start()
        started.append(stranger_app)
        cars = {}
        for app_id, app in [
            ("writer", None),
            ("reader", reader_app),
            ("stranger", stranger_app),
            ("limited", None),
            ("relayonly", None),
        ]:
            port = app.port if app is not None else None
            car = Sidecar(app_id, folder, registry, app_port=port, log_dir=workdir)
            started.append(car.start(wait="/v1.0/healthz"))
            cars[app_id] = car
        yield Apps(**cars, reader_app=reader_app, stranger_app=stranger_app)
    finally:
        for process in reversed(started):
            process.proc.stop()


def received(app: TinyApp, path: str, marker: str) -> bool:
    return any(r["path"] == path and marker in str(r["event"]) for r in app.received())


def groups(broker: redis.Redis, stream: str) -> set[str]:
    if not broker.exists(stream):
        return set()
    return {g["name"].decode() for g in broker.xinfo_groups(stream)}


def publish(car: Sidecar, topic: str, marker: str) -> httpx.Response:
    return httpx.post(
        f"{car.http}/v1.0/publish/scoped/{topic}", json={"marker": marker}, timeout=10
    )


def transact(car: Sidecar, key: str) -> httpx.Response:
    return upsert_in_transaction(car, "outboxstore", key)


def test_only_apps_granted_a_protected_topic_subscribe_to_it(
    apps: Apps, redis_server: RedisServer
) -> None:
    guarded, opened = unique("guarded"), unique("open")
    assert publish(apps.writer, GUARDED, guarded).status_code == 204
    assert publish(apps.writer, OPEN, opened).status_code == 204
    wait_until(lambda: received(apps.reader_app, "/events/guarded", guarded), timeout=15)
    wait_until(lambda: received(apps.reader_app, "/events/open", opened), timeout=15)
    wait_until(lambda: received(apps.stranger_app, "/events/open", opened), timeout=15)
    # The stranger's sidecar never subscribed to the protected topic: no consumer group of its
    # own on the stream, so nothing there can ever reach its app.
    broker = redis.Redis(port=redis_server.port)
    try:
        assert groups(broker, GUARDED) == {"reader"}
        assert groups(broker, OPEN) == {"reader", "stranger"}
    finally:
        broker.close()
    assert not received(apps.stranger_app, "/events/guarded", guarded)


def test_an_app_not_granted_a_protected_topic_cannot_publish_to_it(apps: Apps) -> None:
    for app_id in ("stranger", "reader", "relayonly"):
        answer = publish(getattr(apps, app_id), GUARDED, "x")
        assert answer.status_code == 403, answer.text
        assert answer.json()["errorCode"] == "ERR_PUBSUB_FORBIDDEN"
        assert answer.json()["message"] == f"topic {GUARDED} is not allowed for app id {app_id}"
    # An app listed in publishingScopes may publish only the topics listed for it.
    assert publish(apps.limited, OPEN, "x").status_code == 403
    assert publish(apps.stranger, OPEN, "x").status_code == 204


def test_the_outbox_publishes_through_the_apps_scopes(apps: Apps) -> None:
    """Granted both its internal topic and the topic, the writer's transaction is announced."""
    key = unique("granted")
    assert transact(apps.writer, key).status_code == 204
    wait_until(lambda: received(apps.reader_app, "/events/guarded", key), timeout=15)


def test_an_outbox_not_granted_its_internal_topic_fails_and_stores_nothing(apps: Apps) -> None:
    """daprd publishes to the internal topic before it commits, through the scopes."""
    key = unique("limited")
    answer = transact(apps.limited, key)
    assert answer.status_code == 500, answer.text
    assert answer.json()["errorCode"] == "ERR_PUBLISH_OUTBOX"
    assert answer.json()["message"] == (
        "error while publishing outbox message: "
        f"topic {internal('limited')} is not allowed for app id limited"
    )
    read = httpx.get(f"{apps.limited.http}/v1.0/state/outboxstore/{key}", timeout=10)
    assert read.status_code == 204, read.text


def test_an_outbox_not_granted_its_topic_commits_but_announces_nothing(
    apps: Apps, redis_server: RedisServer
) -> None:
    """As daprd: the commit goes through the internal topic, and the relay is refused."""
    broker = redis.Redis(port=redis_server.port)
    try:
        events_before = broker.xlen(GUARDED)
        internal_before = broker.xlen(internal("relayonly"))
        key = unique("relayonly")
        assert transact(apps.relayonly, key).status_code == 204
        read = httpx.get(f"{apps.relayonly.http}/v1.0/state/outboxstore/{key}", timeout=10)
        assert read.status_code == 200, read.text
        # It went the long way (not the store's own append to the topic's stream)...
        wait_until(lambda: broker.xlen(internal("relayonly")) == internal_before + 1)
        # ...and the relay, which consumes it at once, publishes nothing.
        time.sleep(2)
        assert broker.xlen(GUARDED) == events_before
    finally:
        broker.close()


def test_a_dead_letter_goes_only_where_the_app_may_publish(
    apps: Apps, redis_server: RedisServer
) -> None:
    """daprd publishes dead letters through the app's scopes: the reader may not publish the
    protected topic, so that dead letter is lost (logged), while the one to OPEN arrives."""
    broker = redis.Redis(port=redis_server.port)
    try:
        guarded_before = broker.xlen(GUARDED)
        lost, kept = unique("lost"), unique("kept")
        assert publish(apps.stranger, REFUSED_GUARDED, lost).status_code == 204
        assert publish(apps.stranger, REFUSED_OPEN, kept).status_code == 204
        wait_until(lambda: received(apps.reader_app, "/events/open", kept), timeout=15)
        # Both were refused at once; the first one's dead letter was refused by the scopes.
        time.sleep(1)
        assert broker.xlen(GUARDED) == guarded_before
        assert not received(apps.reader_app, "/events/guarded", lost)
    finally:
        broker.close()
