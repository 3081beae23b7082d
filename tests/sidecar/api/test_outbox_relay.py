"""The outbox's internal messages and relay, as daprd 1.18's (pkg/runtime/pubsub/outbox.go).

The internal message is the CloudEvent itself, its ``id`` the key of the marker the transaction
writes; the relay publishes it, with ``topic`` and ``pubsubname`` set, once the marker can be
read, looking for it (a read that fails too) for about 10 s. Messages and stores are read and
written straight in Redis, as daprd would leave them. The stores keep the default ``keyPrefix``
(the app id): daprd stores the marker under its own key all the same, unprefixed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from string import Template
from typing import Any

import httpx
import orjson
import pytest
import redis

from sidecar.outbox import internal_topic
from tests.conftest import RedisServer
from tests.procs import wait_until
from tests.sidecar.api.conftest import Sidecar, component, unique, upsert_in_transaction

#: An internal message as daprd's PublishInternal writes it: json.Marshal of the event, whose
#: JSON data keeps its numbers' text (unmarshalPrecise), pubsubname the outbox's pubsub.
DAPRD_MESSAGE = Template(
    '{"data":{"html":"\\u003cb\\u003e\\u0026","n":1.0,"price":10.10},'
    '"datacontenttype":"application/json","id":"$marker","pubsubname":"outboxbus",'
    '"source":"daprd-app","specversion":"1.0","time":"2024-01-01T00:00:00Z","topic":"",'
    '"traceid":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"",'
    '"type":"com.dapr.event.sent"}'
)
#: What daprd's relay publishes of it: read by json.Unmarshal (numbers become float64s),
#: topic and pubsubname set, written again by json.Marshal.
DAPRD_RELAYED = Template(
    '{"data":{"html":"\\u003cb\\u003e\\u0026","n":1,"price":10.1},'
    '"datacontenttype":"application/json","id":"$marker","pubsubname":"pubsub",'
    '"source":"daprd-app","specversion":"1.0","time":"2024-01-01T00:00:00Z","topic":"$topic",'
    '"traceid":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"",'
    '"type":"com.dapr.event.sent"}'
)


@contextmanager
def relaying(
    workdir: Path,
    registry: Path,
    store_redis: RedisServer,
    pubsub_redis: RedisServer,
    **pubsub_metadata: str,
) -> Iterator[tuple[Sidecar, str]]:
    """A sidecar with an outbox store on ``store_redis`` and its pubsub on ``pubsub_redis``;
    with the topic the outbox publishes to."""
    topic = unique("events")
    folder = workdir / unique("outbox-relay")
    folder.mkdir()
    store = component(
        "relaystore",
        "state.redis",
        {
            "redisHost": store_redis.host,
            "outboxPublishPubsub": "pubsub",
            "outboxPublishTopic": topic,
        },
    )
    pubsub_spec = {"redisHost": pubsub_redis.host, **pubsub_metadata}
    pubsub = component("pubsub", "pubsub.redis", pubsub_spec)
    (folder / "c.yaml").write_text(store + "---\n" + pubsub)
    car = Sidecar(unique("relay"), folder, registry, log_dir=workdir).start()
    try:
        yield car, topic
    finally:
        car.stop()


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)


def daprd_message(marker: str) -> bytes:
    return DAPRD_MESSAGE.substitute(marker=marker).encode()


def published(server: RedisServer, topic: str, marker: str) -> list[bytes]:
    """The events with id ``marker`` on the topic's stream, as the broker holds them."""
    with client(server) as r:
        entries = r.xrange(topic)
    return [
        fields[b"data"] for _, fields in entries if orjson.loads(fields[b"data"])["id"] == marker
    ]


def save_marker(server: RedisServer, marker: str) -> None:
    """The marker row as daprd's committed transaction leaves it: value "0", under the
    marker's own key (daprd adds it after the API prefixed the app's keys)."""
    with client(server) as r:
        r.hset(marker, mapping={"data": "0", "version": 1})


def save_prefixed_marker(car: Sidecar, marker: str) -> str:
    """The marker row as earlier releases of this sidecar left it, under the app's prefix;
    its Redis key."""
    saved = httpx.post(
        f"{car.http}/v1.0/state/relaystore", json=[{"key": marker, "value": "0"}], timeout=10
    )
    assert saved.status_code == 204, saved.text
    return f"{car.app_id}||{marker}"


def test_a_message_in_daprds_format_is_relayed_and_its_marker_deleted(
    workdir: Path, registry: Path, redis_server: RedisServer
) -> None:
    with relaying(workdir, registry, redis_server, redis_server) as (car, topic):
        marker = f"outbox-{uuid.uuid4()}"
        save_marker(redis_server, marker)
        with client(redis_server) as r:
            r.xadd(internal_topic(car.app_id, topic, "default"), {"data": daprd_message(marker)})
        wait_until(lambda: published(redis_server, topic, marker), timeout=15)
        relayed = DAPRD_RELAYED.substitute(marker=marker, topic=topic).encode()
        assert published(redis_server, topic, marker) == [relayed]
        with client(redis_server) as r:
            wait_until(lambda: r.exists(marker) == 0, timeout=10)


def test_a_transaction_leaves_daprds_message_on_the_internal_topic(
    workdir: Path, registry: Path, redis_server: RedisServer, own_redis: RedisServer
) -> None:
    """State and pubsub on different Redis servers: the relay path, as daprd's."""
    store = client(own_redis)
    watcher = store.pubsub()
    try:
        # Every key written and deleted in the store, in order.
        store.config_set("notify-keyspace-events", "KA")
        watcher.psubscribe("__keyspace@0__:*")
        wait_until(lambda: watcher.get_message(timeout=0.1) is not None)  # the subscribe reply
        with relaying(workdir, registry, own_redis, redis_server) as (car, topic):
            key = unique("job")
            answer = upsert_in_transaction(car, "relaystore", key)
            assert answer.status_code == 204, answer.text

            with client(redis_server) as r:
                [(_, fields)] = r.xrange(internal_topic(car.app_id, topic, "default"))
            raw: bytes = fields[b"data"]
            event: dict[str, Any] = orjson.loads(raw)
            assert {"id", "specversion", "source", "type", "data"} <= event.keys(), raw
            assert list(event) == sorted(event), raw  # json.Marshal of a Go map
            assert event["specversion"] == "1.0"
            assert event["data"] == key
            assert event["source"] == car.app_id
            assert event["pubsubname"] == "pubsub"
            assert event["id"].startswith("outbox-")

            writes: list[tuple[str, str]] = []

            def marker_deleted() -> bool:
                while (note := watcher.get_message(timeout=0.1)) is not None:
                    channel, what = note["channel"].decode(), note["data"].decode()
                    writes.append((channel.split(":", 1)[1], what))
                return (event["id"], "del") in writes

            # The marker the transaction committed is the one the relay deletes once out.
            wait_until(marker_deleted, timeout=15)
            assert (event["id"], "hset") in writes
            assert writes.index((event["id"], "hset")) < writes.index((event["id"], "del"))
            assert published(redis_server, topic, event["id"])
    finally:
        watcher.close()
        store.close()


@pytest.mark.parametrize("left_by", ["daprd", "earlier sidecar"])
def test_a_marker_unreadable_for_seconds_is_relayed_once_the_store_answers(
    workdir: Path, registry: Path, redis_server: RedisServer, own_redis: RedisServer, left_by: str
) -> None:
    """daprd takes a failed read of the marker for one that finds nothing yet: it looks again
    for about 10 s. The sidecar used to lose the event at the first failed read (pubsub.redis
    acknowledges a message whose handler failed), whatever the message's format."""
    with relaying(workdir, registry, own_redis, redis_server) as (car, topic):
        marker = f"outbox-{uuid.uuid4()}"
        stored_as = marker
        if left_by == "daprd":
            save_marker(own_redis, marker)
        else:
            stored_as = save_prefixed_marker(car, marker)
        own_redis.stop()  # its data is on disk (appendonly), the marker too
        internal = internal_topic(car.app_id, topic, "default")
        sent = time.monotonic()
        with client(redis_server) as r:
            message = daprd_message(marker)
            if left_by == "earlier sidecar":
                message = orjson.dumps({"marker": marker, "event": orjson.loads(message)})
            r.xadd(internal, {"data": message})

            def taken() -> bool:
                groups = r.xinfo_groups(internal)
                return bool(groups) and groups[0]["last-delivered-id"] != b"0-0"

            wait_until(taken, timeout=5)
        time.sleep(2.5)  # the store's outage, while the relay looks for the marker
        own_redis.restart()

        wait_until(lambda: published(redis_server, topic, marker), timeout=15)
        assert time.monotonic() - sent < 12  # within daprd's schedule
        with client(own_redis) as r:
            wait_until(lambda: r.exists(stored_as) == 0, timeout=10)


def test_the_relay_has_as_many_workers_as_the_outbox_pubsubs_concurrency(
    workdir: Path, registry: Path, redis_server: RedisServer
) -> None:
    """Messages whose transaction failed (no marker will come) each hold a relay worker for
    daprd's ~10 s; contrib's pubsub.redis runs ``concurrency`` workers, so with 20 of them the
    event behind 15 such messages still goes out at once (the sidecar used to run 10)."""
    with relaying(workdir, registry, redis_server, redis_server, concurrency="20") as (car, topic):
        internal = internal_topic(car.app_id, topic, "default")
        marker = f"outbox-{uuid.uuid4()}"
        save_marker(redis_server, marker)
        with client(redis_server) as r:
            for _ in range(15):
                r.xadd(internal, {"data": daprd_message(f"outbox-{uuid.uuid4()}")})
            sent = time.monotonic()
            r.xadd(internal, {"data": daprd_message(marker)})
        wait_until(lambda: published(redis_server, topic, marker), timeout=15)
        assert time.monotonic() - sent < 8  # not behind the failed ones' 10 s
