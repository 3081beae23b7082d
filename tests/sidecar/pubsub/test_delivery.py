"""Deliverer against a real HTTP app and real Redis: daprd's response table, rules, retries."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web

from sidecar.app_channel import AppChannel
from sidecar.breaker import Breakers
from sidecar.cloudevents import has_expired
from sidecar.components import RouteRule, Subscription
from sidecar.delivery import Deliverer
from sidecar.errors import DaprError
from sidecar.publishing import Publisher
from sidecar.pubsub.redis import RedisStreamsPubSub
from sidecar.resiliency import Resiliency
from sidecar.resiliency_loading import parse_resiliency
from sidecar.routing import RuleCompileError
from tests.conftest import RedisServer
from tests.procs import free_port
from tests.sidecar.pubsub.helpers import eventually, redis_component, serve_app, unique

Reply = tuple[int, bytes]


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class App:
    """A tiny real HTTP app; ``reply`` decides each answer."""

    port: int
    calls: list[Call] = field(default_factory=list)
    reply: Callable[[Call], Awaitable[Reply]] | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)  #: frees slow handlers

    async def handle(self, request: web.Request) -> web.Response:
        call = Call(request.path, dict(request.headers), await request.read())
        self.calls.append(call)
        status, body = await self.reply(call) if self.reply else (200, b"")
        return web.Response(status=status, body=body)


def answer(status: int, body: bytes = b"") -> Callable[[Call], Awaitable[Reply]]:
    async def reply(_: Call) -> Reply:
        return status, body

    return reply


@pytest_asyncio.fixture
async def app() -> AsyncIterator[App]:
    state = App(port=free_port())
    async with serve_app(state.port, state.handle):
        yield state
        state.release.set()


@dataclass
class Stack:
    pubsub: RedisStreamsPubSub
    publisher: Publisher
    deliverer: Deliverer
    redis: aioredis.Redis
    group: str
    topic: str
    subscription: Subscription

    async def publish(self, data: bytes = b'{"n": 1}', **metadata: str) -> None:
        await self.publisher.publish("pubsub", self.topic, data, "application/json", metadata)

    async def pending(self) -> int:
        info = await self.redis.xpending(self.topic, self.group)
        return int(info["pending"])

    async def dead_letters(self, topic: str) -> list[bytes]:
        entries: Any = await self.redis.xrange(topic)
        return [fields[b"data"] for _, fields in entries]


StackFactory = Callable[..., Awaitable[Stack]]


@pytest_asyncio.fixture
async def stack(redis_server: RedisServer, app: App) -> AsyncIterator[StackFactory]:
    made: list[Stack] = []
    channels: list[AppChannel] = []

    async def make(
        *,
        rules: tuple[RouteRule, ...] = (),
        default_path: str = "/events",
        dead_letter_topic: str = "",
        resiliency: Resiliency | None = None,
        metadata: dict[str, str] | None = None,
        app_port: int | None = None,
        token: str | None = None,
        start: bool = True,
        **component_metadata: str,
    ) -> Stack:
        group = unique("g")
        settings = {"consumerID": group, "redeliverInterval": "0", **component_metadata}
        pubsub = RedisStreamsPubSub(redis_component(redis_server.host, **settings), "subscriber")
        await pubsub.init()
        # One sidecar: its publishes and deliveries share the pubsub's breaker (as daprd's).
        policies, breakers = resiliency or Resiliency(), Breakers()
        publisher = Publisher(
            {"pubsub": pubsub}, "publisher", resiliency=policies, breakers=breakers
        )
        channel = AppChannel("127.0.0.1", app_port or app.port, token)
        channels.append(channel)
        deliverer = Deliverer(
            channel, {"pubsub": pubsub}, publisher, policies, "subscriber", breakers=breakers
        )
        client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
        topic = unique("topic")
        subscription = Subscription(
            pubsubname="pubsub",
            topic=topic,
            rules=rules,
            default_path=default_path,
            dead_letter_topic=dead_letter_topic,
            metadata=metadata or {},
        )
        built = Stack(pubsub, publisher, deliverer, client, group, topic, subscription)
        made.append(built)
        if start:
            await deliverer.start([subscription])
        return built

    yield make
    for built in made:
        await built.deliverer.close()
        await built.pubsub.close()
        await built.redis.aclose()
    for channel in channels:
        await channel.close()


async def delivered_and_acked(stack: Stack, app: App, calls: int = 1) -> None:
    await eventually(lambda: len(app.calls) >= calls)
    for _ in range(500):
        if await stack.pending() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("message was never acknowledged")


async def handler_failed(caplog: pytest.LogCaptureFixture) -> None:
    """The component logged that the handler raised (the delivery failed)."""
    await eventually(lambda: "Error processing Redis message" in caplog.text)


async def acknowledged(stack: Stack) -> None:
    """contrib 1.18's pubsub.redis acknowledges a failed delivery too, when it failed within
    processingTimeout (redelivery is off in these stacks): retrying is the policy's job."""
    for _ in range(250):
        if await stack.pending() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("a failed delivery was left pending")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b""),
        (204, b""),
        (200, b"ok, not json"),
        (200, b"null"),
        (200, b'"a string"'),
        (200, b'{"status": "SUCCESS"}'),
        (200, b'{"other": "field"}'),
        (201, b'{"status": null}'),
    ],
)
async def test_success_rows_acknowledge(
    stack: StackFactory, app: App, status: int, body: bytes
) -> None:
    app.reply = answer(status, body)
    s = await stack()
    await s.publish()
    await delivered_and_acked(s, app)
    assert len(app.calls) == 1


async def test_request_carries_event_headers_and_token(stack: StackFactory, app: App) -> None:
    s = await stack(token="s3cret")
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await s.publisher.publish(
        "pubsub", s.topic, b'{"n": 7}', "application/json", {}, traceparent=trace
    )
    await delivered_and_acked(s, app)
    call = app.calls[0]
    assert call.path == "/events"
    assert call.headers["Content-Type"] == "application/cloudevents+json"
    assert call.headers["traceparent"] == trace
    assert call.headers["dapr-api-token"] == "s3cret"
    assert call.headers["pubsubName"] == "pubsub"
    event = call.event
    assert event["data"] == {"n": 7} and event["topic"] == s.topic
    assert event["source"] == "publisher" and event["type"] == "com.dapr.event.sent"


@pytest.mark.parametrize(
    ("status", "body", "log"),
    [
        (200, b'{"status": "RETRY"}', "RETRY status returned from app while processing"),
        (200, b'{"status": "retry"}', "unknown status returned from app"),
        (500, b"boom", "status code returned: 500"),
        (503, b"", "status code returned: 503"),
    ],
)
async def test_retry_rows_fail_the_delivery_once_without_a_policy(
    stack: StackFactory,
    app: App,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: bytes,
    log: str,
) -> None:
    app.reply = answer(status, body)
    s = await stack()
    await s.publish()
    await handler_failed(caplog)
    assert log in caplog.text
    assert len(app.calls) == 1  # no resiliency policy: a single attempt, like daprd
    await acknowledged(s)


async def test_refused_connection_fails_the_delivery(
    stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    s = await stack(app_port=free_port())
    await s.publish()
    await handler_failed(caplog)
    assert "error returned from app channel" in caplog.text
    await acknowledged(s)


async def test_timeout_from_resiliency_policy_fails_the_delivery(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow(_: Call) -> Reply:
        await asyncio.wait_for(app.release.wait(), 10)
        return 200, b""

    app.reply = slow
    spec = {
        "policies": {"timeouts": {"quick": "200ms"}},
        "targets": {"components": {"pubsub": {"inbound": {"timeout": "quick"}}}},
    }
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": spec}], "subscriber")
    s = await stack(resiliency=resiliency)
    await s.publish()
    await handler_failed(caplog)
    assert len(app.calls) == 1


@pytest.mark.parametrize(
    ("status", "body"), [(200, b'{"status": "DROP"}'), (404, b"no such route")]
)
async def test_drop_rows_acknowledge_without_dead_letter(
    stack: StackFactory, app: App, status: int, body: bytes
) -> None:
    app.reply = answer(status, body)
    s = await stack()
    await s.publish()
    await delivered_and_acked(s, app)


async def test_drop_goes_to_dead_letter_with_the_original_event(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app.reply = answer(200, b'{"status": "DROP"}')
    dead = unique("dead")
    s = await stack(dead_letter_topic=dead)
    await s.publish()
    await delivered_and_acked(s, app)
    assert "DROP status returned from app while processing pub/sub event" in caplog.text
    letters = await s.dead_letters(dead)
    assert [json.loads(letter) for letter in letters] == [app.calls[0].event]
    assert json.loads(letters[0])["topic"] == s.topic  # topic unchanged


async def test_404_is_dead_lettered_like_a_drop(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """daprd's HTTP postman answers a 404 with ErrMessageDropped, and the subscription sends
    every dropped message to its dead letter topic."""
    app.reply = answer(404, b"no such route")
    dead = unique("dead")
    s = await stack(dead_letter_topic=dead)
    await s.publish()
    await delivered_and_acked(s, app)
    assert "non-retriable error returned from app while processing pub/sub event" in caplog.text
    letters = await s.dead_letters(dead)
    assert [json.loads(letter) for letter in letters] == [app.calls[0].event]


RETRY_SPEC = {
    "policies": {"retries": {"fast": {"policy": "constant", "duration": "20ms", "maxRetries": 2}}},
    "targets": {"components": {"pubsub": {"inbound": {"retry": "fast"}}}},
}


async def test_resiliency_retries_until_success(stack: StackFactory, app: App) -> None:
    async def third_time_lucky(_: Call) -> Reply:
        return (500, b"") if len(app.calls) < 3 else (200, b"")

    app.reply = third_time_lucky
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": RETRY_SPEC}], "subscriber")
    s = await stack(resiliency=resiliency)
    await s.publish()
    await delivered_and_acked(s, app, calls=3)
    assert len(app.calls) == 3
    assert len({call.event["id"] for call in app.calls}) == 1


async def test_exhausted_retries_without_dead_letter_fail_the_delivery(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app.reply = answer(500)
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": RETRY_SPEC}], "subscriber")
    s = await stack(resiliency=resiliency)
    await s.publish()
    await handler_failed(caplog)
    assert len(app.calls) == 3  # first attempt + maxRetries 2
    await acknowledged(s)


async def test_exhausted_retries_go_to_dead_letter(stack: StackFactory, app: App) -> None:
    app.reply = answer(200, b'{"status": "RETRY"}')
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": RETRY_SPEC}], "subscriber")
    dead = unique("dead")
    s = await stack(resiliency=resiliency, dead_letter_topic=dead)
    await s.publish()
    await delivered_and_acked(s, app, calls=3)
    assert len(await s.dead_letters(dead)) == 1


BREAKER_SPEC = {
    "policies": {
        "retries": {"fast": {"policy": "constant", "duration": "20ms", "maxRetries": 5}},
        "circuitBreakers": {"twice": {"trip": "consecutiveFailures >= 2", "timeout": "30s"}},
    },
    "targets": {
        "components": {"pubsub": {"inbound": {"retry": "fast", "circuitBreaker": "twice"}}}
    },
}


async def test_an_open_circuit_breaker_fails_deliveries_without_calling_the_app(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app.reply = answer(500)
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": BREAKER_SPEC}], "subscriber")
    dead = unique("dead")
    s = await stack(resiliency=resiliency, dead_letter_topic=dead, metadata={"concurrency": "1"})
    with caplog.at_level("INFO", logger="sidecar.breaker"):
        await s.publish()
        # Two failed attempts open the breaker; the retries left are not tried (its refusal
        # is permanent), and the message is dead-lettered.
        await eventually(lambda: "changed state from closed to open" in caplog.text)
    await delivered_and_acked(s, app, calls=2)
    await s.publish(b'{"n": 2}')
    for _ in range(250):
        if len(await s.dead_letters(dead)) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(await s.dead_letters(dead)) == 2
    assert len(app.calls) == 2  # the second message never reached the app


SHARED_BREAKER_SPEC = {
    "policies": {
        "circuitBreakers": {"twice": {"trip": "consecutiveFailures >= 2", "timeout": "30s"}},
    },
    "targets": {
        "components": {
            "pubsub": {
                "inbound": {"circuitBreaker": "twice"},
                "outbound": {"circuitBreaker": "twice"},
            }
        }
    },
}


async def test_a_pubsubs_breaker_opened_by_deliveries_also_refuses_its_publishes(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """daprd keeps one breaker per component for its inbound and outbound policies."""
    app.reply = answer(500)
    spec = {"kind": "Resiliency", "spec": SHARED_BREAKER_SPEC}
    s = await stack(resiliency=parse_resiliency([spec], "subscriber"))
    with caplog.at_level("INFO", logger="sidecar.breaker"):
        await s.publish()
        await s.publish(b'{"n": 2}')
        await eventually(lambda: "changed state from closed to open" in caplog.text)
    with pytest.raises(DaprError) as refused:
        await s.publish(b'{"n": 3}')
    assert refused.value.error_code == "ERR_PUBSUB_PUBLISH_MESSAGE"
    assert "circuit breaker is open" in refused.value.message


RULES = (
    RouteRule('event.type == "job.completed" && event.data.owner == "x"', "/completed"),
    RouteRule('event.type.startsWith("job.")', "/jobs"),
)


async def test_rules_first_match_then_default(stack: StackFactory, app: App) -> None:
    s = await stack(rules=RULES, default_path="/other", metadata={"concurrency": "1"})
    for kind, owner in (("job.completed", "x"), ("job.completed", "y"), ("misc", "x")):
        await s.publish(json.dumps({"owner": owner}).encode(), **{"cloudevent.type": kind})
    await delivered_and_acked(s, app, calls=3)
    assert sorted(call.path for call in app.calls) == ["/completed", "/jobs", "/other"]


async def test_no_match_without_default_is_acked_and_never_sent(
    stack: StackFactory, app: App
) -> None:
    s = await stack(rules=RULES, default_path="", metadata={"concurrency": "1"})
    await s.publish(b'{"owner": "x"}', **{"cloudevent.type": "misc"})
    await s.publish(b'{"owner": "x"}', **{"cloudevent.type": "job.completed"})
    await delivered_and_acked(s, app)
    assert [call.path for call in app.calls] == ["/completed"]


async def test_rule_evaluation_error_fails_the_delivery_without_calling_the_app(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    s = await stack(rules=RULES[:1], default_path="/other")
    await s.publish(b'{"no_owner": 1}', **{"cloudevent.type": "job.completed"})
    await handler_failed(caplog)
    assert "error finding matching route" in caplog.text
    assert app.calls == []
    await acknowledged(s)


async def test_bad_rule_stops_start(stack: StackFactory) -> None:
    s = await stack(rules=(RouteRule("event.type ==", "/x"),), start=False)
    with pytest.raises(RuleCompileError, match="not valid CEL"):
        await s.deliverer.start([s.subscription])


async def test_expired_event_is_dropped_without_calling_the_app(
    stack: StackFactory, app: App
) -> None:
    s = await stack(start=False, metadata={"concurrency": "1"})
    await s.publish(b'{"n": "old"}', ttlInSeconds="1")
    await s.publish(b'{"n": "fresh"}', ttlInSeconds="60")
    first: Any = await s.redis.xrange(s.topic, count=1)
    expiring = json.loads(first[0][1][b"data"])
    # Expiration has second precision; wait (bounded) until the first event is past it.
    await eventually(lambda: has_expired(expiring), 3)
    await s.deliverer.start([s.subscription])
    await delivered_and_acked(s, app)
    assert [call.event["data"] for call in app.calls] == [{"n": "fresh"}]


async def test_raw_payload_subscription_gets_a_wrapped_event(stack: StackFactory, app: App) -> None:
    s = await stack(metadata={"rawPayload": "true"})
    await s.publisher.publish("pubsub", s.topic, b"\x00raw", "", {"rawPayload": "true"})
    await delivered_and_acked(s, app)
    event = app.calls[0].event
    assert base64.b64decode(event["data_base64"]) == b"\x00raw"
    assert event["datacontenttype"] == "application/octet-stream"


async def test_concurrency_is_honoured(stack: StackFactory, app: App) -> None:
    inflight = 0
    peak = 0
    gate = asyncio.Event()

    async def busy(_: Call) -> Reply:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        if peak == 3:
            gate.set()
        try:
            await asyncio.wait_for(gate.wait(), 5)
        finally:
            inflight -= 1
        return 200, b""

    app.reply = busy
    s = await stack(metadata={"concurrency": "3"})
    for _ in range(9):
        await s.publish()
    await delivered_and_acked(s, app, calls=9)
    assert peak == 3


async def test_a_delivery_failing_while_the_subscription_closes_stays_pending(
    stack: StackFactory, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """daprd waits for the handler's context instead of failing such a delivery, so neither
    the acknowledgement of a failure nor a retry nor the dead letter happens."""

    async def retry_when_released(_: Call) -> Reply:
        await asyncio.wait_for(app.release.wait(), 10)
        return 200, b'{"status": "RETRY"}'

    app.reply = retry_when_released
    resiliency = parse_resiliency([{"kind": "Resiliency", "spec": RETRY_SPEC}], "subscriber")
    dead = unique("dead")
    s = await stack(resiliency=resiliency, dead_letter_topic=dead)
    await s.publish()
    await eventually(lambda: len(app.calls) == 1)
    s.deliverer.refuse()  # the sidecar begins to shut down
    app.release.set()
    await handler_failed(caplog)
    await asyncio.sleep(0.2)  # an acknowledgement or a retry would have happened by now
    assert len(app.calls) == 1
    assert await s.pending() == 1
    assert await s.dead_letters(dead) == []
