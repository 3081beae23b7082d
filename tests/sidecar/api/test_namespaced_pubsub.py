"""A namespaced pubsub (its metadata names ``{namespace}``), as daprd's NamespaceScoped one:
every topic is prefixed with the sidecar's NAMESPACE on the broker, so two namespaces sharing
one Redis do not see each other's events, while apps keep the topic names they use.

Three apps share one Redis: ``writer`` and ``reader`` in namespace ``team-a``, ``other`` in
``team-b``; both readers subscribe to the same topic. What each sidecar does is checked on Redis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.procs import wait_until
from tests.sidecar.api.conftest import Sidecar, TinyApp, component, unique, upsert_in_transaction

SUFFIX = os.urandom(3).hex()
TOPIC = f"shared-{SUFFIX}"
REFUSED = f"refused-{SUFFIX}"
LETTERS = f"letters-{SUFFIX}"
PLAIN = f"plain-{SUFFIX}"


@dataclass
class Apps:
    writer: Sidecar
    reader: Sidecar
    other: Sidecar
    reader_app: TinyApp
    other_app: TinyApp


@pytest.fixture(scope="module")
def apps(workdir: Path, registry: Path, redis_server: RedisServer) -> Iterator[Apps]:
    folder = workdir / "namespaced-resources"
    folder.mkdir()
    docs = [
        # A consumer group per namespace and app: the usual reason to name {namespace}.
        component(
            "nspubsub",
            "pubsub.redis",
            {"redisHost": redis_server.host, "consumerID": "{namespace}"},
        ),
        component("plainpubsub", "pubsub.redis", {"redisHost": redis_server.host}),
        component(
            "nsoutbox",
            "state.redis",
            {
                "redisHost": redis_server.host,
                "redisDB": "3",
                "outboxPublishPubsub": "nspubsub",
                "outboxPublishTopic": TOPIC,
            },
        ),
    ]
    (folder / "c.yaml").write_text("\n---\n".join(docs))
    routes = [
        {"pubsubname": "nspubsub", "topic": TOPIC, "route": "/events/shared"},
        {
            "pubsubname": "nspubsub",
            "topic": REFUSED,
            "route": "/status/404",
            "deadLetterTopic": LETTERS,
        },
        {"pubsubname": "nspubsub", "topic": LETTERS, "route": "/events/letters"},
        {"pubsubname": "plainpubsub", "topic": PLAIN, "route": "/events/plain"},
    ]
    started: list[Sidecar | TinyApp] = []
    try:
        reader_app = TinyApp(routes, workdir).start()
        started.append(reader_app)
        other_app = TinyApp(routes, workdir).start()
        started.append(other_app)
        cars = {}
        for app_id, app, namespace in [
            ("writer", None, "team-a"),
            ("reader", reader_app, "team-a"),
            ("other", other_app, "team-b"),
        ]:
            port = app.port if app is not None else None
            env = {"NAMESPACE": namespace}
            car = Sidecar(app_id, folder, registry, app_port=port, env=env, log_dir=workdir)
            started.append(car.start())
            cars[app_id] = car
        yield Apps(**cars, reader_app=reader_app, other_app=other_app)
    finally:
        for process in reversed(started):
            process.proc.stop()


@pytest.fixture()
def broker(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def received(app: TinyApp, path: str, marker: str) -> list[dict[str, object]]:
    return [r["event"] for r in app.received() if r["path"] == path and marker in str(r["event"])]


def publish(car: Sidecar, pubsub: str, topic: str, marker: str) -> httpx.Response:
    url = f"{car.http}/v1.0/publish/{pubsub}/{topic}"
    return httpx.post(url, json={"marker": marker}, timeout=10)


def test_topics_are_prefixed_with_the_namespace_on_the_broker(
    apps: Apps, broker: redis.Redis
) -> None:
    marker = unique("a")
    assert publish(apps.writer, "nspubsub", TOPIC, marker).status_code == 204
    wait_until(lambda: received(apps.reader_app, "/events/shared", marker), timeout=15)
    [event] = received(apps.reader_app, "/events/shared", marker)
    assert (event["topic"], event["pubsubname"]) == (TOPIC, "nspubsub")  # as the app named it
    assert broker.xlen(f"team-a{TOPIC}") >= 1
    assert not broker.exists(TOPIC)
    # The consumer groups are the rendered consumerID ("{namespace}" = namespace.app id).
    groups = {g["name"].decode() for g in broker.xinfo_groups(f"team-a{TOPIC}")}
    assert groups == {"team-a.reader"}


def test_another_namespace_does_not_see_the_events(apps: Apps, broker: redis.Redis) -> None:
    mine, theirs = unique("team-a"), unique("team-b")
    assert publish(apps.writer, "nspubsub", TOPIC, mine).status_code == 204
    assert publish(apps.other, "nspubsub", TOPIC, theirs).status_code == 204
    wait_until(lambda: received(apps.reader_app, "/events/shared", mine), timeout=15)
    wait_until(lambda: received(apps.other_app, "/events/shared", theirs), timeout=15)
    assert broker.xlen(f"team-b{TOPIC}") >= 1
    assert not received(apps.other_app, "/events/shared", mine)
    assert not received(apps.reader_app, "/events/shared", theirs)


def test_bulk_publishes_dead_letters_and_the_outbox_are_prefixed_too(
    apps: Apps, broker: redis.Redis
) -> None:
    bulk = unique("bulk")
    entries = [{"entryId": "1", "event": {"marker": bulk}, "contentType": "application/json"}]
    url = f"{apps.writer.http}/v1.0-alpha1/publish/bulk/nspubsub/{TOPIC}"
    assert httpx.post(url, json=entries, timeout=10).status_code == 204
    wait_until(lambda: received(apps.reader_app, "/events/shared", bulk), timeout=15)
    # The reader refuses REFUSED (404): its sidecar dead-letters it to team-a + LETTERS.
    refused = unique("refused")
    assert publish(apps.writer, "nspubsub", REFUSED, refused).status_code == 204
    wait_until(lambda: received(apps.reader_app, "/events/letters", refused), timeout=15)
    assert broker.xlen(f"team-a{LETTERS}") == 1 and not broker.exists(LETTERS)
    # An outbox transaction announces its write on the namespaced topic (the relay path).
    key = unique("outbox")
    assert upsert_in_transaction(apps.writer, "nsoutbox", key).status_code == 204
    wait_until(lambda: received(apps.reader_app, "/events/shared", key), timeout=15)


def test_a_pubsub_without_namespace_in_its_metadata_keeps_the_topic(
    apps: Apps, broker: redis.Redis
) -> None:
    marker = unique("plain")
    assert publish(apps.other, "plainpubsub", PLAIN, marker).status_code == 204
    wait_until(lambda: received(apps.reader_app, "/events/plain", marker), timeout=15)
    wait_until(lambda: received(apps.other_app, "/events/plain", marker), timeout=15)
    assert broker.xlen(PLAIN) == 1
