"""Publisher: daprd's envelope on the wire, its error codes, bulk publish per-entry results."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import yaml

from sidecar.components import Component
from sidecar.errors import DaprError
from sidecar.publishing import FailedEntry, PublishEntry, Publisher
from sidecar.pubsub.base import BulkEntry
from sidecar.pubsub.redis import RedisStreamsPubSub
from sidecar.resiliency_loading import parse_resiliency
from tests.conftest import RedisServer
from tests.procs import free_port
from tests.sidecar.pubsub.helpers import redis_component, unique


@pytest_asyncio.fixture
async def setup(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[Publisher, aioredis.Redis]]:
    pubsub = RedisStreamsPubSub(redis_component(redis_server.host), "publisher-app")
    await pubsub.init()
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    yield Publisher({"pubsub": pubsub}, "publisher-app"), client
    await pubsub.close()
    await client.aclose()


async def stored(client: aioredis.Redis, topic: str) -> list[bytes]:
    entries: Any = await client.xrange(topic)
    return [fields[b"data"] for _, fields in entries]


async def test_publish_stores_the_envelope(setup: tuple[Publisher, aioredis.Redis]) -> None:
    publisher, client = setup
    topic = unique("pub")
    await publisher.publish("pubsub", topic, b'{"a": 1}', "application/json", {"k": "v"})
    event = json.loads((await stored(client, topic))[0])
    assert event["data"] == {"a": 1}
    assert event["source"] == "publisher-app"
    assert event["topic"] == topic and event["pubsubname"] == "pubsub"
    assert event["traceparent"] == event["traceid"] and event["traceparent"].startswith("00-")


async def test_cloudevent_passthrough_and_raw_payload(
    setup: tuple[Publisher, aioredis.Redis],
) -> None:
    publisher, client = setup
    topic = unique("pub")
    own = json.dumps({"id": "mine", "type": "job.done", "specversion": "1.0", "data": 1})
    await publisher.publish("pubsub", topic, own.encode(), "application/cloudevents+json", {})
    await publisher.publish("pubsub", topic, b"raw bytes", "text/plain", {"rawPayload": "true"})
    first, second = await stored(client, topic)
    event = json.loads(first)
    assert (event["id"], event["type"], event["topic"]) == ("mine", "job.done", topic)
    assert second == b"raw bytes"


async def test_unknown_pubsub_and_empty_topic(setup: tuple[Publisher, aioredis.Redis]) -> None:
    publisher, _ = setup
    with pytest.raises(DaprError) as missing:
        await publisher.publish("nope", "t", b"x", "text/plain", {})
    assert (missing.value.error_code, missing.value.http_status) == ("ERR_PUBSUB_NOT_FOUND", 404)
    with pytest.raises(DaprError) as empty:
        await publisher.publish("pubsub", "", b"x", "text/plain", {})
    assert (empty.value.error_code, empty.value.http_status) == ("ERR_TOPIC_NAME_EMPTY", 404)


async def test_broker_failure_is_err_pubsub_publish_message() -> None:
    dead = Component(
        name="pubsub",
        type="pubsub.redis",
        version="v1",
        metadata={"redisHost": f"127.0.0.1:{free_port()}"},
        init_timeout=0.5,
    )
    pubsub = RedisStreamsPubSub(dead, "app")
    try:
        with pytest.raises(DaprError) as failed:
            await Publisher({"pubsub": pubsub}, "app").publish("pubsub", "t", b"x", "", {})
        assert (failed.value.error_code, failed.value.http_status) == (
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            500,
        )
    finally:
        await pubsub.close()


async def test_bulk_publish_envelopes_each_entry(setup: tuple[Publisher, aioredis.Redis]) -> None:
    publisher, client = setup
    topic = unique("bulk")
    entries = [
        PublishEntry("1", b'{"n": 1}', "application/json"),
        PublishEntry("2", b"two", "text/plain", {"cloudevent.type": "custom"}),
    ]
    assert await publisher.bulk_publish("pubsub", topic, entries, {}) == []
    events = [json.loads(raw) for raw in await stored(client, topic)]
    assert [e["data"] for e in events] == [{"n": 1}, "two"]
    assert [e["type"] for e in events] == ["com.dapr.event.sent", "custom"]


@pytest.mark.parametrize("ids", [("a", "a"), ("a", "")])
async def test_bulk_entry_ids_must_be_unique_and_present(
    setup: tuple[Publisher, aioredis.Redis], ids: tuple[str, str]
) -> None:
    publisher, _ = setup
    entries = [PublishEntry(entry_id, b"x") for entry_id in ids]
    with pytest.raises(DaprError) as bad:
        await publisher.bulk_publish("pubsub", unique("bulk"), entries, {})
    assert bad.value.error_code == "ERR_PUBSUB_EVENTS_SER"


async def test_bulk_publish_reports_failed_entries(
    setup: tuple[Publisher, aioredis.Redis],
) -> None:
    publisher, client = setup
    topic = unique("bulk")
    await client.set(topic, "not a stream")  # every XADD on this key fails with WRONGTYPE
    entries = [PublishEntry("a", b"1"), PublishEntry("b", b"2")]
    failed = await publisher.bulk_publish("pubsub", topic, entries, {})
    assert [entry.entry_id for entry in failed] == ["a", "b"]


class RefusesOnce:
    """The Redis component, except that it refuses the given entries on their first publish
    (a broker taking part of a batch), and remembers what each call carried."""

    def __init__(self, inner: RedisStreamsPubSub, refuse: set[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.features = inner.features
        self.refuse = refuse
        self.calls: list[list[str]] = []

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        await self.inner.publish(topic, data, metadata)

    async def bulk_publish(self, topic: str, entries: Sequence[BulkEntry]) -> list[str]:
        self.calls.append([entry.entry_id for entry in entries])
        refused = [entry.entry_id for entry in entries if entry.entry_id in self.refuse]
        self.refuse -= set(refused)
        taken = [entry for entry in entries if entry.entry_id not in refused]
        return refused + await self.inner.bulk_publish(topic, taken)


PATIENT = """
kind: Resiliency
spec:
  policies:
    retries:
      twice: {policy: constant, duration: 10ms, maxRetries: 2}
  targets:
    components:
      pubsub:
        outbound:
          retry: twice
"""


def patient_publisher(component: Any) -> Publisher:
    policy = parse_resiliency([yaml.safe_load(PATIENT)], "publisher-app")
    return Publisher({"pubsub": component}, "publisher-app", resiliency=policy)


async def test_bulk_publish_retries_only_the_refused_entries(
    setup: tuple[Publisher, aioredis.Redis],
) -> None:
    plain, client = setup
    inner = plain._pubsubs["pubsub"]
    assert isinstance(inner, RedisStreamsPubSub)
    flaky = RefusesOnce(inner, {"b"})
    topic = unique("bulk")
    entries = [PublishEntry(entry_id, entry_id.encode()) for entry_id in "abc"]
    assert await patient_publisher(flaky).bulk_publish("pubsub", topic, entries, {}) == []
    assert flaky.calls == [["a", "b", "c"], ["b"]]
    assert sorted(json.loads(raw)["data"] for raw in await stored(client, topic)) == list("abc")
    # Without a policy the refused entry is reported at once, with daprd's reason.
    flaky = RefusesOnce(inner, {"c"})
    failed = await Publisher({"pubsub": flaky}, "app").bulk_publish("pubsub", topic, entries, {})
    assert flaky.calls == [["a", "b", "c"]]
    assert failed == [FailedEntry("c", f"error when publishing to topic {topic} in pubsub pubsub")]


async def test_bulk_publish_reports_what_still_fails_when_retries_run_out(
    setup: tuple[Publisher, aioredis.Redis],
) -> None:
    plain, client = setup
    inner = plain._pubsubs["pubsub"]
    assert isinstance(inner, RedisStreamsPubSub)
    flaky = RefusesOnce(inner, set())
    topic = unique("bulk")
    await client.set(topic, "not a stream")  # every XADD on this key fails with WRONGTYPE
    entries = [PublishEntry("a", b"1"), PublishEntry("b", b"2")]
    failed = await patient_publisher(flaky).bulk_publish("pubsub", topic, entries, {})
    assert [entry.entry_id for entry in failed] == ["a", "b"]
    assert flaky.calls == [["a", "b"]] * 3  # the first attempt and two retries
