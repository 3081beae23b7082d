"""Subscriptions: routing, retries, circuit breakers, dead letters, expiry.

A message handler returns (so the broker acknowledges) only after success, a drop, or a
successful dead-letter publish; otherwise it raises and the broker redelivers later. The
behaviour follows daprd's ``pkg/runtime/subscription``; one attempt is a postman's
(``sidecar.postman``): the app's subscriptions post to the app, streaming ones send on their
stream. Subscriptions with ``bulkSubscribe`` enabled are batched by ``sidecar.bulk_delivery``,
which reuses the dead letters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sidecar import cloudevents
from sidecar.app_channel import AppChannel
from sidecar.app_consumers import AppConsumers, AppTopic
from sidecar.breaker import BreakerError, Breakers, CircuitBreaker
from sidecar.bulk_delivery import BulkSubscriber
from sidecar.components import Subscription
from sidecar.errors import DaprError
from sidecar.metrics import ComponentMetrics
from sidecar.postman import Outcome, Postman, RetriableError, StreamPostman
from sidecar.postman_http import HttpPostman
from sidecar.publishing import Publisher, pubsub_not_found
from sidecar.pubsub.base import (
    Consumers,
    Handler,
    Message,
    PubSub,
    SubscribeFailedError,
    SubscriptionClosedError,
)
from sidecar.pubsub.scopes import UNSCOPED, TopicScopes
from sidecar.resiliency import Policy, Resiliency
from sidecar.routing import Router, RuleEvaluationError, where

logger = logging.getLogger(__name__)


class DeliveryFailedError(Exception):
    """Delivery failed for good this time; what becomes of the message is the component's
    (pubsub.redis keeps it only when the failure came after processingTimeout)."""


class SubscribeError(Exception):
    """A streaming subscription cannot start; daprd returns the plain error (gRPC UNKNOWN)."""


@dataclass(frozen=True, slots=True)
class Route:
    pubsubname: str
    topic: str
    router: Router
    dead_letter_topic: str
    raw_payload: bool
    policy: Policy
    postman: Postman
    breaker: CircuitBreaker | None = None  #: the component's, shared by its subscriptions
    #: Why the subscription's rawPayload is unreadable ("" when it is fine): daprd then fails
    #: (or dead-letters) every message of the subscription.
    metadata_error: str = ""


def _raw_payload(subscription: Subscription) -> tuple[bool, str]:
    """The subscription's rawPayload as contrib's IsRawPayload reads it, and the error if any."""
    try:
        return cloudevents.is_raw_payload(subscription.metadata), ""
    except ValueError as exc:
        return False, str(exc)


def _concurrency(subscription: Subscription) -> int:
    """A subscription-level ``concurrency`` metadata value; 0 = the component's own setting."""
    raw = subscription.metadata.get("concurrency", "")
    try:
        return max(int(raw), 0) if raw else 0
    except ValueError:
        raise ValueError(
            f"subscription {subscription.pubsubname}/{subscription.topic} ({subscription.source}): "
            f"metadata concurrency must be an integer, got {raw!r}"
        ) from None


class Deliverer:
    """Every subscription of this sidecar: the app's (declarative and programmatic, posted to
    the app over HTTP) and the streaming ones (``SubscribeTopicEventsAlpha1``) a client opens
    at any time, with or without an app."""

    def __init__(
        self,
        app_channel: AppChannel | None,
        pubsubs: Mapping[str, PubSub],
        publisher: Publisher,
        resiliency: Resiliency,
        app_id: str,
        metrics: ComponentMetrics | None = None,
        scopes: Mapping[str, TopicScopes] | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self._app = app_channel
        self._http = HttpPostman(app_channel, metrics) if app_channel is not None else None
        self._pubsubs = pubsubs
        self._scopes = scopes or {}
        self._publisher = publisher
        self._resiliency = resiliency
        self._breakers = breakers or Breakers()
        self._app_id = app_id
        self._bulk_subscribers: list[BulkSubscriber] = []
        self._streams: dict[Consumers, tuple[Subscription, StreamPostman]] = {}
        self._closed = False
        #: Set while messages may go to the app: cleared while it is unhealthy (health checks)
        #: and set for good at close, so waiting deliveries end. Streams do not wait for it.
        self._open = asyncio.Event()
        self._open.set()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: The app's subscriptions at the components, from start(); stopped while the app is
        #: unhealthy.
        self._app_consumers = AppConsumers(pubsubs, self._scopes)
        self._switching: asyncio.Task[None] | None = None  #: subscribes or unsubscribes them

    @property
    def streaming(self) -> list[Subscription]:
        """The streaming subscriptions open now (the metadata API lists them)."""
        return [sub for sub, _ in self._streams.values()]

    def _route(self, sub: Subscription, postman: Postman) -> Route:
        raw_payload, metadata_error = _raw_payload(sub)
        policy = self._resiliency.pubsub_inbound(sub.pubsubname)
        breaker = policy.breaker
        return Route(
            pubsubname=sub.pubsubname,
            topic=sub.topic,
            router=Router(sub.rules, sub.default_path, where(sub)),
            dead_letter_topic=sub.dead_letter_topic,
            raw_payload=raw_payload,
            policy=policy,
            postman=postman,
            breaker=self._breakers.component(breaker, sub.pubsubname) if breaker else None,
            metadata_error=metadata_error,
        )

    async def start(self, subscriptions: Sequence[Subscription]) -> None:
        """Start the app's subscriptions, one per pubsub and topic (``sidecar.subscriber``
        picked them as daprd does); every rule is compiled before anything is subscribed."""
        if self._http is None:
            raise RuntimeError("the app's subscriptions need an app channel")
        if self._closed:
            return  # shutting down: nothing starts any more
        routes: list[tuple[Route, Subscription, int]] = []
        for sub in subscriptions:
            if sub.pubsubname not in self._pubsubs:
                logger.warning(
                    "subscription to topic %s: pubsub %s not found, skipping",
                    sub.topic,
                    sub.pubsubname,
                )
                continue
            routes.append((self._route(sub, self._http), sub, _concurrency(sub)))
        for route, sub, concurrency in routes:
            deliver = self._bulk(route, sub) if sub.bulk else partial(self._handle, route)
            handler = self._handler(deliver, gated=True)
            topic = AppTopic(route.pubsubname, route.topic, handler, concurrency, sub.bulk)
            self._app_consumers.topics.append(topic)
        if self._open.is_set():
            await self._app_consumers.start()

    async def _switch_app_subscriptions(self) -> None:
        """Bring the components' subscriptions in line with the app's health, as daprd's
        StopAppSubscriptions / StartAppSubscriptions do: while the app is unhealthy the sidecar
        reads nothing and claims nothing. What it had read and not finished stays pending, so
        another replica's sidecar hands it out again after processingTimeout; holding it
        instead (and claiming it again, under the same consumer name) would keep it from them
        for as long as the app is down."""
        app = self._app_consumers
        while not self._closed:
            if not self._open.is_set() and app.active:
                await app.stop()
                logger.info("app subscriptions stopped while the app is unhealthy")
            elif self._open.is_set() and not app.active and app.topics:
                await app.start()
                logger.info("app subscriptions started (the app is healthy)")
            else:
                return

    def _app_health_switch(self) -> None:
        if self._switching is None or self._switching.done():
            self._switching = asyncio.create_task(
                self._switch_app_subscriptions(), name="app-subscriptions"
            )

    async def subscribe_stream(self, sub: Subscription, postman: StreamPostman) -> Consumers:
        """Start a streaming subscription (daprd's StartStreamerSubscription): every message
        of the topic goes to ``postman``; stop it with ``unsubscribe_stream``. Several streams
        on one topic share the component's consumer group, as daprd's do."""
        if self._closed:
            raise SubscribeError("subscriber is closed")
        pubsub = self._pubsubs.get(sub.pubsubname)
        if pubsub is None:
            raise pubsub_not_found(sub.pubsubname)
        if not self._scopes.get(sub.pubsubname, UNSCOPED).may_subscribe(sub.topic):
            raise SubscribeError(
                f"failed to create subscription for {sub.pubsubname}: {_not_allowed(sub)}"
            )
        try:
            concurrency = _concurrency(sub)
        except ValueError as exc:
            raise SubscribeError(str(exc)) from None
        route = self._route(sub, postman)
        try:
            consumers = await pubsub.subscribe(
                sub.topic,
                self._handler(partial(self._handle, route), gated=False),
                concurrency=concurrency,
            )
        except SubscribeFailedError as exc:
            # daprd's StartStreamerSubscription, around subscription.New's error.
            raise SubscribeError(
                f"failed to create subscription for {sub.pubsubname}: "
                f"failed to subscribe to topic {sub.topic}: {exc}"
            ) from None
        self._streams[consumers] = (sub, postman)
        return consumers

    async def unsubscribe_stream(self, consumers: Consumers) -> None:
        """Stop a streaming subscription; what it had not answered is delivered again."""
        self._streams.pop(consumers, None)
        await consumers.stop()

    def _bulk(self, route: Route, sub: Subscription) -> Handler:
        """Start a bulk subscriber (sidecar.bulk_delivery); its handler batches messages."""
        assert self._app is not None  # start() checked
        bulk = BulkSubscriber(
            route,
            self._app,
            max_messages=sub.bulk_max_messages,
            max_await_ms=sub.bulk_max_await_ms,
            dead_letter=self._dead_letter,
            fail=self._fail,
        )
        bulk.start()
        self._bulk_subscribers.append(bulk)
        return bulk.deliver

    def pause(self) -> None:
        """The app is unhealthy: stop its subscriptions at the components until ``resume``
        (see ``_switch_app_subscriptions``); deliveries under way wait, unacknowledged."""
        self._open.clear()
        if self._app_consumers.topics:
            self._app_health_switch()

    def resume(self) -> None:
        self._open.set()
        if self._app_consumers.topics:
            self._app_health_switch()

    def refuse(self) -> None:
        """Take no new messages (they are left unacknowledged); those in flight go on."""
        self._closed = True
        self._open.set()

    async def close(self) -> None:
        """Refuse new messages and wait for the ones in flight, however long they take (the
        runtime bounds the whole shutdown by ``--dapr-graceful-shutdown-seconds``)."""
        self.refuse()
        if self._switching is not None:
            self._switching.cancel()
        await self._app_consumers.cancel_retries()
        await self._idle.wait()
        for bulk in self._bulk_subscribers:
            await bulk.close()
        self._bulk_subscribers.clear()
        for consumers, (_, stream) in list(self._streams.items()):
            stream.close("stream closed")  # its client hears it as daprd's clients do
            await self.unsubscribe_stream(consumers)

    def _handler(self, deliver: Handler, *, gated: bool) -> Handler:
        """``deliver`` wrapped to count what is in flight and refuse messages while closing;
        ``gated``: also hold messages while the app is unhealthy."""

        async def handle(message: Message) -> None:
            if gated and not self._open.is_set():
                await self._open.wait()
            if self._closed:
                raise SubscriptionClosedError("subscription is closed")
            self._inflight += 1
            self._idle.clear()
            try:
                await deliver(message)
            finally:
                self._inflight -= 1
                if not self._inflight:
                    self._idle.set()

        return handle

    async def _handle(self, route: Route, message: Message) -> None:
        if route.metadata_error:
            logger.error("error deserializing pubsub metadata: %s", route.metadata_error)
            await self._fail(route, message, ValueError(route.metadata_error))
            return
        try:
            event, body = cloudevents.parse_delivered(
                message.data,
                message.metadata,
                topic=route.topic,
                pubsubname=route.pubsubname,
                raw_payload=route.raw_payload,
            )
        except cloudevents.CloudEventError as exc:
            logger.error(
                "error deserializing cloud event in pubsub %s and topic %s: %s",
                route.pubsubname,
                route.topic,
                exc,
            )
            await self._fail(route, message, exc)
            return
        event_id = event.get("id")
        if cloudevents.has_expired(event):
            logger.warning(
                "dropping expired pub/sub event %s as of %s", event_id, event.get("expiration")
            )
            if route.dead_letter_topic:
                await self._dead_letter(route, message)
            return
        try:
            path = route.router.route(event)
        except RuleEvaluationError as exc:
            logger.error(
                "error finding matching route for event %s in pubsub %s and topic %s: %s",
                event_id,
                route.pubsubname,
                route.topic,
                exc,
            )
            await self._fail(route, message, exc)
            return
        if path is None:
            logger.debug(
                "no matching route for event %s in pubsub %s and topic %s; skipping",
                event_id,
                route.pubsubname,
                route.topic,
            )
            if route.dead_letter_topic:
                await self._dead_letter(route, message)
            return
        await self._deliver(route, message, event, body, path)

    async def _deliver(
        self, route: Route, message: Message, event: Mapping[str, Any], body: bytes, path: str
    ) -> None:
        """Attempts under the inbound resiliency policy; then ack, dead letter or redeliver."""
        retry_policy = route.policy.retry
        started = time.monotonic()
        retry = 0
        while True:
            error = await self._attempt(route, message, event, body, path)
            if error is None:
                return
            if self._closed:
                # daprd: a delivery failing while its subscription closes waits for the
                # handler's context instead of failing, so the broker keeps the message.
                raise SubscriptionClosedError(str(error))
            if retry_policy is None or isinstance(error, BreakerError):
                break  # an open circuit breaker's refusal is not retried
            delay = retry_policy.delay(retry, time.monotonic() - started)
            if delay is None:
                break
            await asyncio.sleep(delay)
            retry += 1
        await self._fail(route, message, error)

    async def _attempt(
        self, route: Route, message: Message, event: Mapping[str, Any], body: bytes, path: str
    ) -> Exception | None:
        """One attempt, through the component's circuit breaker: None when the message was
        delivered (or dropped, and dead-lettered where there is a dead letter topic)."""
        breaker = route.breaker
        token = 0
        if breaker is not None:
            try:
                token = breaker.before()
            except BreakerError as exc:
                return exc
        error: Exception | None = None
        try:
            async with asyncio.timeout(route.policy.timeout):
                outcome = await route.postman.post(
                    route.pubsubname, route.topic, message, event, body, path
                )
            # daprd's postman drops on the app's DROP and on 404 (ErrMessageDropped), and
            # every dropped message goes to the dead letter topic when there is one.
            dropped = outcome is not Outcome.SUCCESS and route.dead_letter_topic
            if dropped and not await self._dead_letter(route, message):
                error = RetriableError("failed to send dropped message to dead letter")
        except TimeoutError:
            error = RetriableError(f"timeout delivering pub/sub event {event.get('id')}")
        except RetriableError as exc:
            error = exc
        if breaker is not None:
            breaker.after(token, error is None)
        return error

    async def _dead_letter(self, route: Route, message: Message) -> bool:
        """Publish the original bytes to the dead letter topic; True when the broker took them."""
        try:
            await self._publisher.publish_raw(
                route.pubsubname, route.dead_letter_topic, message.data, message.metadata
            )
        except DaprError as exc:
            logger.error(
                "error sending message to dead letter, origin topic: %s dead letter topic %s "
                "err: %s",
                route.topic,
                route.dead_letter_topic,
                exc,
            )
            return False
        return True

    async def _fail(self, route: Route, message: Message, error: Exception) -> None:
        """Dead-letter the message if possible (then it is acknowledged), else fail it; while
        the subscription closes, neither (the broker keeps it, as daprd's does)."""
        if self._closed:
            raise SubscriptionClosedError(str(error))
        if route.dead_letter_topic and await self._dead_letter(route, message):
            return
        raise DeliveryFailedError(str(error))


def _not_allowed(sub: Subscription) -> str:
    return f"subscription to topic '{sub.topic}' on pubsub '{sub.pubsubname}' is not allowed"
