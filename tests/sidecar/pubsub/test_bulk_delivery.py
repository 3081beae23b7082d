"""Bulk subscribe against a real HTTP app, real Redis and the in-memory bus: daprd's batches."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web

from sidecar.app_channel import AppChannel
from sidecar.components import Component, RouteRule, Subscription
from sidecar.delivery import Deliverer
from sidecar.publishing import Publisher
from sidecar.pubsub.base import PubSub
from sidecar.pubsub.memory import InMemoryPubSub
from sidecar.pubsub.redis import RedisStreamsPubSub
from sidecar.resiliency import Resiliency
from sidecar.resiliency_loading import parse_resiliency
from sidecar.resources import TemplateContext, parse_resources
from tests.conftest import RedisServer
from tests.procs import free_port
from tests.sidecar.api.conftest import Sidecar, component
from tests.sidecar.pubsub.helpers import eventually, redis_component, serve_app, unique

Reply = tuple[int, bytes]


@dataclass
class BulkCall:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  #: time.monotonic() when the app received it
    raw: bytes = b""  #: the body as it came

    @property
    def entries(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.body["entries"]
        return result

    @property
    def data(self) -> list[Any]:
        return [entry["event"]["data"] for entry in self.entries]


Answer = Callable[[dict[str, Any]], str | None]  #: an entry -> its status; None = left out


def statuses(call: BulkCall, answer: Answer) -> bytes:
    pairs = [(entry["entryId"], answer(entry)) for entry in call.entries]
    body = {"statuses": [{"entryId": e, "status": s} for e, s in pairs if s is not None]}
    return json.dumps(body).encode()


@dataclass
class App:
    """A real HTTP app that records bulk requests; ``reply`` decides each answer."""

    port: int
    calls: list[BulkCall] = field(default_factory=list)
    reply: Callable[[BulkCall], Reply] = field(
        default=lambda call: (200, statuses(call, lambda _: "SUCCESS"))
    )
    first_answer_after: float = 0.0  #: seconds the first request is held before its answer

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        call = BulkCall(request.path, dict(request.headers), json.loads(raw), time.monotonic(), raw)
        self.calls.append(call)
        if len(self.calls) == 1 and self.first_answer_after:
            await asyncio.sleep(self.first_answer_after)
        status, reply = self.reply(call)
        return web.Response(status=status, body=reply)

    def delivered(self) -> list[Any]:
        return [data for call in self.calls for data in call.data]


@pytest_asyncio.fixture
async def app() -> AsyncIterator[App]:
    state = App(port=free_port())
    async with serve_app(state.port, state.handle):
        yield state


@dataclass
class Stack:
    pubsub: PubSub
    publisher: Publisher
    deliverer: Deliverer
    redis: aioredis.Redis
    group: str
    topic: str

    async def publish(self, data: Any, **metadata: str) -> None:
        body = json.dumps(data).encode()
        await self.publisher.publish("pubsub", self.topic, body, "application/json", metadata)

    async def pending(self) -> int:
        info = await self.redis.xpending(self.topic, self.group)
        return int(info["pending"])

    async def dead_letters(self, topic: str) -> list[Any]:
        entries: Any = await self.redis.xrange(topic)
        return [json.loads(fields[b"data"])["data"] for _, fields in entries]


StackFactory = Callable[..., Awaitable[Stack]]


@pytest_asyncio.fixture
async def stack(redis_server: RedisServer, app: App) -> AsyncIterator[StackFactory]:
    made: list[tuple[Stack, AppChannel]] = []

    async def make(
        *,
        max_messages: int = 100,
        max_await_ms: int = 30_000,  # batches fill by count unless a test wants the timer
        rules: tuple[RouteRule, ...] = (),
        default_path: str = "/bulk",
        dead_letter_topic: str = "",
        resiliency: Resiliency | None = None,
        concurrency: int = 10,
        token: str | None = None,
        subscription: Subscription | None = None,
        memory: bool = False,
        **component_metadata: str,
    ) -> Stack:
        group = unique("g")
        settings = {"consumerID": group, "redeliverInterval": "0", **component_metadata}
        pubsub: PubSub
        if memory:
            pubsub = InMemoryPubSub(Component("pubsub", "pubsub.in-memory", "v1", {}), "sub")
        else:
            pubsub = RedisStreamsPubSub(redis_component(redis_server.host, **settings), "sub")
        await pubsub.init()
        publisher = Publisher({"pubsub": pubsub}, "publisher")
        channel = AppChannel("127.0.0.1", app.port, token)
        deliverer = Deliverer(
            channel, {"pubsub": pubsub}, publisher, resiliency or Resiliency(), "sub"
        )
        subscription = subscription or Subscription(
            pubsubname="pubsub",
            topic=unique("topic"),
            rules=rules,
            default_path=default_path,
            dead_letter_topic=dead_letter_topic,
            metadata={"concurrency": str(concurrency)},
            bulk=True,
            bulk_max_messages=max_messages,
            bulk_max_await_ms=max_await_ms,
        )
        client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
        built = Stack(pubsub, publisher, deliverer, client, group, subscription.topic)
        made.append((built, channel))
        await deliverer.start([subscription])
        return built

    yield make
    for built, channel in made:
        await built.deliverer.close()
        await built.pubsub.close()
        await built.redis.aclose()
        await channel.close()


async def settled(s: Stack, pending: int = 0) -> None:
    """Wait until exactly ``pending`` messages of the topic are left unacknowledged."""
    for _ in range(500):
        if await s.pending() == pending:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"pending stayed at {await s.pending()}, expected {pending}")


async def handler_failures(caplog: pytest.LogCaptureFixture, count: int) -> None:
    """The Redis component logged ``count`` failed handler calls (failed entries: contrib 1.18
    acknowledges them too when they failed within processingTimeout)."""
    await eventually(lambda: caplog.text.count("Error processing Redis message") >= count)


def by_data(**answers: str | None) -> Callable[[BulkCall], Reply]:
    """Answer each entry by its event's ``data["n"]`` (as a string key); SUCCESS by default."""

    def reply(call: BulkCall) -> Reply:
        return 200, statuses(call, lambda e: answers.get(str(e["event"]["data"]["n"]), "SUCCESS"))

    return reply


async def test_full_batch_is_sent_at_once_in_daprds_shape(stack: StackFactory, app: App) -> None:
    s = await stack(max_messages=5, max_await_ms=60_000, token="s3cret")
    traces = [f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" for _ in range(5)]
    for n, trace in enumerate(traces):
        data = json.dumps({"n": n}).encode()
        await s.publisher.publish(
            "pubsub", s.topic, data, "application/json", {}, traceparent=trace
        )
    await eventually(lambda: len(app.calls) == 1)  # well before the 60 s window
    await settled(s)
    call = app.calls[0]
    assert call.path == "/bulk"
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["dapr-api-token"] == "s3cret"
    assert call.headers["pubsubName"] == "pubsub"
    assert call.headers["traceparent"] == call.entries[-1]["event"]["traceparent"]
    body = call.body
    assert list(body) == ["entries", "id", "metadata", "pubsubname", "topic", "type"]
    assert body["type"] == "com.dapr.event.sent.bulk"
    assert body["topic"] == s.topic and body["pubsubname"] == "pubsub"
    assert body["metadata"] == {"pubsubName": "pubsub"}
    uuid.UUID(body["id"])
    assert sorted(call.data, key=lambda d: d["n"]) == [{"n": n} for n in range(5)]
    for entry in call.entries:
        assert list(entry) == ["entryId", "event", "metadata", "contentType"]
        uuid.UUID(entry["entryId"])
        assert entry["contentType"] == "application/cloudevents+json"
        assert isinstance(entry["metadata"], dict)
        event = entry["event"]
        assert event["topic"] == s.topic and event["type"] == "com.dapr.event.sent"
        assert event["traceparent"] in traces
    assert len({entry["entryId"] for entry in call.entries}) == 5


async def test_events_are_written_as_daprd_writes_the_maps_it_decoded(
    stack: StackFactory, app: App
) -> None:
    """daprd decodes each message with json.Unmarshal (numbers become float64s) and marshals
    the envelope with encoding/json: keys sorted, HTML characters escaped."""
    s = await stack(max_messages=1)
    data = b'{"z": 1.0, "a": 10.10, "h": "<&>", "big": 9007199254740993}'
    await s.publisher.publish("pubsub", s.topic, data, "application/json", {})
    await eventually(lambda: len(app.calls) == 1)
    raw = app.calls[0].raw
    assert b'"data":{"a":10.1,"big":9007199254740992,"h":"\\u003c\\u0026\\u003e","z":1}' in raw
    event = app.calls[0].entries[0]["event"]
    assert list(event) == sorted(event)
    assert list(app.calls[0].body["entries"][0]) == ["entryId", "event", "metadata", "contentType"]


async def test_partial_batch_is_sent_when_the_await_duration_passes(
    stack: StackFactory, app: App
) -> None:
    s = await stack(max_messages=100, max_await_ms=400)
    started = time.monotonic()
    for n in range(3):
        await s.publish({"n": n})
    await eventually(lambda: len(app.calls) == 1)
    await settled(s)
    assert app.calls[0].at - started >= 0.35  # held for the window, not sent at once
    assert sorted(d["n"] for d in app.delivered()) == [0, 1, 2]


async def test_concurrency_below_batch_size_flushes_on_the_timer(
    stack: StackFactory, app: App
) -> None:
    s = await stack(max_messages=100, max_await_ms=100, concurrency=2)
    for n in range(5):
        await s.publish({"n": n})
    await eventually(lambda: len(app.delivered()) == 5)
    await settled(s)
    assert max(len(call.entries) for call in app.calls) <= 2  # two workers held at most
    assert sorted(d["n"] for d in app.delivered()) == list(range(5))


async def test_per_entry_statuses_fail_only_retried_and_unanswered_entries(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app.reply = by_data(**{"1": "RETRY", "2": "DROP", "3": None, "4": "retry"})
    s = await stack(max_messages=5)
    for n in range(5):
        await s.publish({"n": n})
    await handler_failures(caplog, 3)  # RETRY, left out, unknown status (case-sensitive)
    await settled(s)
    assert caplog.text.count("Error processing Redis message") == 3
    assert len(app.calls) == 1  # no resiliency policy: one attempt, like daprd
    assert "DROP status returned from app while processing pub/sub event" in caplog.text


async def test_failed_and_dropped_entries_go_to_the_dead_letter_topic(
    stack: StackFactory, app: App
) -> None:
    app.reply = by_data(**{"1": "RETRY", "2": "DROP", "3": None})
    dead = unique("dead")
    s = await stack(max_messages=4, dead_letter_topic=dead)
    for n in range(4):
        await s.publish({"n": n})
    await eventually(lambda: len(app.calls) == 1)
    await settled(s)
    letters = await s.dead_letters(dead)
    assert sorted(d["n"] for d in letters) == [1, 2, 3]


async def test_resiliency_retries_only_the_failed_entries(stack: StackFactory, app: App) -> None:
    def reply(call: BulkCall) -> Reply:
        # Attempt 1: 0 succeeds; attempt 2: 1 succeeds; attempt 3: 2 succeeds.
        attempt = len(app.calls)
        return 200, statuses(
            call, lambda e: "SUCCESS" if e["event"]["data"]["n"] < attempt else "RETRY"
        )

    app.reply = reply
    spec = {
        "policies": {"retries": {"fast": {"policy": "constant", "duration": "20ms"}}},
        "targets": {"components": {"pubsub": {"inbound": {"retry": "fast"}}}},
    }
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": spec}], "sub")
    s = await stack(max_messages=3, resiliency=resiliency)
    for n in range(3):
        await s.publish({"n": n})
    await eventually(lambda: len(app.calls) == 3)
    await settled(s)
    assert [sorted(d["n"] for d in call.data) for call in app.calls] == [[0, 1, 2], [1, 2], [2]]
    assert len({call.body["id"] for call in app.calls}) == 1  # daprd reuses the envelope


async def test_exhausted_retries_dead_letter_every_failed_entry(
    stack: StackFactory, app: App
) -> None:
    app.reply = lambda call: (500, b"boom")
    spec = {
        "policies": {
            "retries": {"two": {"policy": "constant", "duration": "20ms", "maxRetries": 2}}
        },
        "targets": {"components": {"pubsub": {"inbound": {"retry": "two"}}}},
    }
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": spec}], "sub")
    dead = unique("dead")
    s = await stack(max_messages=2, resiliency=resiliency, dead_letter_topic=dead)
    for n in range(2):
        await s.publish({"n": n})
    await eventually(lambda: len(app.calls) == 3)  # first attempt + maxRetries 2
    await settled(s)
    assert sorted(d["n"] for d in await s.dead_letters(dead)) == [0, 1]


async def test_an_open_circuit_breaker_dead_letters_what_is_left(
    stack: StackFactory, app: App
) -> None:
    app.reply = lambda call: (500, b"boom")
    spec = {
        "policies": {
            "retries": {"many": {"policy": "constant", "duration": "20ms", "maxRetries": 10}},
            "circuitBreakers": {"twice": {"trip": "consecutiveFailures >= 2"}},
        },
        "targets": {
            "components": {"pubsub": {"inbound": {"retry": "many", "circuitBreaker": "twice"}}}
        },
    }
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": spec}], "sub")
    dead = unique("dead")
    s = await stack(max_messages=2, resiliency=resiliency, dead_letter_topic=dead)
    for n in range(2):
        await s.publish({"n": n})
    await eventually(lambda: len(app.calls) == 2)
    await settled(s)
    # Two failed attempts open the breaker; the eight retries left are never tried.
    assert len(app.calls) == 2
    assert sorted(d["n"] for d in await s.dead_letters(dead)) == [0, 1]


@pytest.mark.parametrize(
    ("status", "body", "failures"),
    [
        (500, b"", 2),
        (200, b"", 2),  # unlike a single delivery, an empty 2xx answer is no status at all
        (200, b"not json", 2),
        (200, b'{"statuses": "SUCCESS"}', 2),
        (404, b"", 0),  # not retriable: acknowledged, never dead-lettered
    ],
)
async def test_whole_request_outcomes(
    stack: StackFactory,
    app: App,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: bytes,
    failures: int,
) -> None:
    app.reply = lambda call: (status, body)
    dead = unique("dead")
    s = await stack(max_messages=2, dead_letter_topic=dead if not failures else "")
    await s.publish({"n": 0})
    await s.publish({"n": 1})
    await eventually(lambda: len(app.calls) == 1)
    await handler_failures(caplog, failures)
    await settled(s)
    assert len(app.calls) == 1
    assert caplog.text.count("Error processing Redis message") == failures
    if not failures:
        assert await s.dead_letters(dead) == []


async def test_an_entry_failed_after_processing_timeout_is_redelivered(
    stack: StackFactory, app: App
) -> None:
    seen: set[str] = set()

    def reply(call: BulkCall) -> Reply:
        def answer(entry: dict[str, Any]) -> str:
            first = entry["event"]["id"] not in seen
            seen.add(entry["event"]["id"])
            return "RETRY" if first and entry["event"]["data"]["n"] == 1 else "SUCCESS"

        return 200, statuses(call, answer)

    app.reply = reply
    # The first answer comes after processingTimeout, between two reclaimer ticks (at start,
    # then every second): only an entry its failure left pending is handed out again.
    app.first_answer_after = 0.4
    s = await stack(
        max_messages=2, max_await_ms=100, processingTimeout="300", redeliverInterval="1s"
    )
    await s.publish({"n": 0})
    await s.publish({"n": 1})
    await eventually(lambda: len(app.delivered()) == 3)
    await settled(s)
    deliveries = [(e["event"]["data"]["n"], e["event"]["id"]) for c in app.calls for e in c.entries]
    assert sorted(n for n, _ in deliveries) == [0, 1, 1]
    assert len({event_id for n, event_id in deliveries if n == 1}) == 1  # the same event again


async def test_routing_rules_split_a_batch_per_path(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry no rule matches is dead-lettered and acknowledged, with daprd 1.18's warning
    (bulksubscription.go words it with a capital, unlike the single-message path's debug line)."""
    rules = (RouteRule('event.type == "a"', "/a"), RouteRule('event.type == "b"', "/b"))
    dead = unique("dead")
    s = await stack(max_messages=4, rules=rules, default_path="", dead_letter_topic=dead)
    for n, kind in enumerate(["a", "b", "c", "a"]):
        await s.publish({"n": n}, **{"cloudevent.type": kind})
    await eventually(lambda: len(app.calls) == 2)
    await settled(s)
    paths = {call.path: sorted(d["n"] for d in call.data) for call in app.calls}
    assert paths == {"/a": [0, 3], "/b": [1]}
    assert [d["n"] for d in await s.dead_letters(dead)] == [2]  # no match: dead letter, acked
    warning = f"No matching route for event in pubsub pubsub and topic {s.topic}; skipping"
    assert caplog.text.count(warning) == 1


async def test_raw_payload_entries_carry_base64_bytes(stack: StackFactory, app: App) -> None:
    topic = unique("raw")
    subscription = Subscription(
        pubsubname="pubsub",
        topic=topic,
        default_path="/raw",
        metadata={"rawPayload": "true"},
        bulk=True,
        bulk_max_messages=1,
    )
    s = await stack(subscription=subscription)
    await s.publisher.publish("pubsub", topic, b"\x00raw", "", {"rawPayload": "true"})
    await eventually(lambda: len(app.calls) == 1)
    await settled(s)
    entry = app.calls[0].entries[0]
    assert entry["event"] == "AHJhdw=="
    assert entry["contentType"] == "application/octet-stream"


DECLARATIVE = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: bulk-orders
spec:
  pubsubname: pubsub
  topic: {topic}
  routes:
    rules:
    - match: event.data.n >= 10
      path: /big
    default: /small
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 3
    maxAwaitDurationMs: 50
"""


async def test_declarative_v2alpha1_bulk_subscription_on_the_in_memory_bus(
    stack: StackFactory, app: App
) -> None:
    topic = unique("declared")
    parsed = parse_resources(DECLARATIVE.format(topic=topic), "subs.yaml", TemplateContext("sub"))
    (subscription,) = parsed.subscriptions
    assert (subscription.bulk, subscription.bulk_max_messages) == (True, 3)
    assert subscription.bulk_max_await_ms == 50
    s = await stack(subscription=subscription, memory=True)
    for n in (1, 20, 3):
        await s.publish({"n": n})
    await eventually(lambda: len(app.delivered()) == 3)
    # daprd's in-memory bus hands over one message at a time, so each batch flushes on the timer.
    assert [(call.path, call.data) for call in app.calls] == [
        ("/small", [{"n": 1}]),
        ("/big", [{"n": 20}]),
        ("/small", [{"n": 3}]),
    ]


async def test_programmatic_bulk_subscription_through_a_sidecar_process(
    redis_server: RedisServer, app: App, tmp_path: Path
) -> None:
    topic = unique("programmatic")
    subscribe = [
        {
            "pubsubname": "pubsub",
            "topic": topic,
            "route": "/orders",
            "metadata": {"concurrency": "5"},
            "bulkSubscribe": {"enabled": True, "maxMessagesCount": 5, "maxAwaitDurationMs": 60000},
        }
    ]

    async def subscriptions(_: web.Request) -> web.Response:
        return web.json_response(subscribe)

    application = web.Application()
    application.router.add_get("/dapr/subscribe", subscriptions)
    application.router.add_post("/{tail:.*}", app.handle)
    runner = web.AppRunner(application)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    resources = tmp_path / "resources"
    resources.mkdir()
    settings = {"redisHost": redis_server.host, "consumerID": unique("g")}
    (resources / "pubsub.yaml").write_text(component("pubsub", "pubsub.redis", settings))
    car = Sidecar("bulk-app", resources, tmp_path, app_port=port, env={"APP_API_TOKEN": "t0ken"})
    try:
        await asyncio.to_thread(car.start)  # blocking wait; the app must keep serving meanwhile
        async with httpx.AsyncClient(base_url=car.http, timeout=10) as http:
            for n in range(5):
                response = await http.post(f"/v1.0/publish/pubsub/{topic}", json={"n": n})
                assert response.status_code == 204
        await eventually(lambda: len(app.calls) == 1, timeout=20)
        call = app.calls[0]
        assert call.path == "/orders"
        assert call.headers["dapr-api-token"] == "t0ken"
        assert sorted(d["n"] for d in call.data) == list(range(5))
    finally:
        await asyncio.to_thread(car.stop)
        await runner.cleanup()


async def test_an_unpaired_surrogate_escape_is_delivered_mended_with_its_batch(
    stack: StackFactory, app: App
) -> None:
    """Another publisher's event may escape a lone surrogate; Go reads it as U+FFFD, as here."""
    s = await stack(max_messages=2)
    lone = {"specversion": "1.0", "id": unique("e"), "source": "js", "type": "t", "data": {"n": 0}}
    lone["data"]["text"] = "a\ud800b"
    wire = json.dumps(lone).encode()  # writes the escape "\ud800"
    assert b"\\ud800" in wire
    await s.redis.xadd(s.topic, {"data": wire})
    await s.publish({"n": 1})
    await eventually(lambda: len(app.delivered()) == 2)
    await settled(s)
    assert len(app.calls) == 1  # one batch, nothing failed or retried
    assert sorted(app.delivered(), key=lambda d: d["n"]) == [{"n": 0, "text": "a\ufffdb"}, {"n": 1}]
