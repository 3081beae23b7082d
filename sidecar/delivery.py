"""Subscriptions -> app: routing, daprd's response table, retries, dead letters, expiry.

A message handler returns (so the broker acknowledges) only after success, a drop, or a
successful dead-letter publish; otherwise it raises and the broker redelivers later. The
behaviour follows daprd's ``pkg/runtime/subscription`` and its HTTP postman. Subscriptions with
``bulkSubscribe`` enabled are batched by ``sidecar.bulk_delivery``, which reuses the dead letters.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sidecar import cloudevents
from sidecar.app_channel import AppChannel, AppUnreachableError
from sidecar.bulk_delivery import BulkSubscriber
from sidecar.components import Subscription
from sidecar.errors import DaprError
from sidecar.metrics import ComponentMetrics, ms_since
from sidecar.publishing import Publisher
from sidecar.pubsub.base import Handler, Message, PubSub, SubscriptionClosedError
from sidecar.pubsub.scopes import UNSCOPED, TopicScopes
from sidecar.resiliency import InboundPolicy, Resiliency
from sidecar.routing import Router, RuleEvaluationError

logger = logging.getLogger(__name__)

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "traceparent", "tracestate", "dapr-api-token"}
)


class Outcome(enum.Enum):
    SUCCESS = "success"  #: acknowledged
    RETRY = "retry"  #: retried per resiliency policy, then dead-lettered or redelivered
    DROP = "drop"  #: acknowledged; dead-lettered when the subscription has a dead letter topic
    NOT_FOUND = "not_found"  #: HTTP 404: a drop too (daprd's ErrMessageDropped), logged apart


#: daprd's ingress metric labels (process_status, status) per outcome: an app's DROP is a drop
#: with status success, a 404 a plain drop.
_INGRESS = {
    Outcome.SUCCESS: ("success", ""),
    Outcome.RETRY: ("retry", ""),
    Outcome.DROP: ("drop", "success"),
    Outcome.NOT_FOUND: ("drop", ""),
}


class DeliveryFailedError(Exception):
    """Delivery failed for good this time; what becomes of the message is the component's
    (pubsub.redis keeps it only when the failure came after processingTimeout)."""


def interpret_response(status: int, body: bytes) -> tuple[Outcome, str]:
    """daprd's reading of the app's answer to a pub/sub POST (outcome, app status if any)."""
    if 200 <= status <= 299:
        text = body.decode("utf-8", errors="replace").lstrip()
        if not text:
            return Outcome.SUCCESS, ""
        try:
            # Go's json.Decoder reads the first value only; trailing bytes are ignored.
            value, _ = json.JSONDecoder().raw_decode(text)
        except ValueError:
            return Outcome.SUCCESS, ""
        if value is None:
            return Outcome.SUCCESS, ""
        if not isinstance(value, dict):
            return Outcome.SUCCESS, ""  # Go cannot decode it into AppResponse: success
        app_status = value.get("status")
        if app_status is None or app_status == "" or app_status == "SUCCESS":
            return Outcome.SUCCESS, ""
        if not isinstance(app_status, str):
            return Outcome.SUCCESS, ""  # a decode error in Go, which daprd treats as success
        if app_status == "DROP":
            return Outcome.DROP, app_status
        return Outcome.RETRY, app_status
    if status == 404:
        return Outcome.NOT_FOUND, ""
    return Outcome.RETRY, ""


@dataclass(frozen=True, slots=True)
class Route:
    pubsubname: str
    topic: str
    router: Router
    dead_letter_topic: str
    raw_payload: bool
    policy: InboundPolicy
    #: Why the subscription's rawPayload is unreadable ("" when it is fine): daprd then fails
    #: (or dead-letters) every message of the subscription.
    metadata_error: str = ""


class _RetriableError(Exception):
    pass


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
    def __init__(
        self,
        app_channel: AppChannel,
        pubsubs: Mapping[str, PubSub],
        publisher: Publisher,
        resiliency: Resiliency,
        app_id: str,
        metrics: ComponentMetrics | None = None,
        scopes: Mapping[str, TopicScopes] | None = None,
    ) -> None:
        self._app = app_channel
        self._metrics = metrics
        self._pubsubs = pubsubs
        self._scopes = scopes or {}
        self._publisher = publisher
        self._resiliency = resiliency
        self._app_id = app_id
        self._bulk_subscribers: list[BulkSubscriber] = []
        self._closed = False
        #: Set while messages may go to the app: cleared while it is unhealthy (health checks)
        #: and set for good at close, so waiting deliveries end.
        self._open = asyncio.Event()
        self._open.set()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self, subscriptions: Sequence[Subscription]) -> None:
        """Compile every rule first (a bad rule stops startup), then subscribe each once."""
        routes: list[tuple[Route, Subscription, int]] = []
        seen: set[tuple[str, str]] = set()
        for sub in subscriptions:
            key = (sub.pubsubname, sub.topic)
            if sub.pubsubname not in self._pubsubs:
                logger.warning(
                    "subscription to topic %s: pubsub %s not found, skipping", sub.topic, key[0]
                )
                continue
            if key in seen:
                logger.warning("duplicate subscription to %s/%s ignored (%s)", *key, sub.source)
                continue
            if not self._scopes.get(sub.pubsubname, UNSCOPED).may_subscribe(sub.topic):
                # daprd logs this and never delivers (its retries fail the same way).
                logger.error(
                    "Failed to start subscription for pubsub %s, topic %s: subscription to "
                    "topic '%s' on pubsub '%s' is not allowed",
                    sub.pubsubname,
                    sub.topic,
                    sub.topic,
                    sub.pubsubname,
                )
                continue
            seen.add(key)
            where = f"subscription {key[0]}/{key[1]} ({sub.source})"
            raw_payload, metadata_error = _raw_payload(sub)
            route = Route(
                pubsubname=sub.pubsubname,
                topic=sub.topic,
                router=Router(sub.rules, sub.default_path, where),
                dead_letter_topic=sub.dead_letter_topic,
                raw_payload=raw_payload,
                policy=self._resiliency.pubsub_inbound(sub.pubsubname),
                metadata_error=metadata_error,
            )
            routes.append((route, sub, _concurrency(sub)))
        for route, sub, concurrency in routes:
            deliver = self._bulk(route, sub) if sub.bulk else partial(self._handle, route)
            await self._pubsubs[route.pubsubname].subscribe(
                route.topic, self._handler(deliver), concurrency=concurrency
            )
            logger.info(
                "subscribed to topic %s on pubsub %s%s",
                route.topic,
                route.pubsubname,
                " (bulk)" if sub.bulk else "",
            )

    def _bulk(self, route: Route, sub: Subscription) -> Handler:
        """Start a bulk subscriber (sidecar.bulk_delivery); its handler batches messages."""
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
        """The app is unhealthy: hold every delivery (unacknowledged) until ``resume``. Once
        each subscription's slots hold one, nothing more is read from the broker, as daprd
        reads nothing while it is unsubscribed."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def refuse(self) -> None:
        """Take no new messages (they are left unacknowledged); those in flight go on."""
        self._closed = True
        self._open.set()

    async def close(self) -> None:
        """Refuse new messages and wait for the ones in flight, however long they take (the
        runtime bounds the whole shutdown by ``--dapr-graceful-shutdown-seconds``)."""
        self.refuse()
        await self._idle.wait()
        for bulk in self._bulk_subscribers:
            await bulk.close()
        self._bulk_subscribers.clear()

    def _handler(self, deliver: Handler) -> Handler:
        async def handle(message: Message) -> None:
            if not self._open.is_set():
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
        headers = self._headers(route, message, event)
        retry_policy = route.policy.retry
        started = time.monotonic()
        retry = 0
        while True:
            try:
                async with asyncio.timeout(route.policy.timeout):
                    outcome = await self._attempt(route, event, body, path, headers)
                # daprd's postman drops on the app's DROP and on 404 (ErrMessageDropped), and
                # every dropped message goes to the dead letter topic when there is one.
                if outcome is Outcome.SUCCESS or not route.dead_letter_topic:
                    return
                if await self._dead_letter(route, message):
                    return
                error: Exception = _RetriableError("failed to send dropped message to dead letter")
            except TimeoutError:
                error = _RetriableError(f"timeout delivering pub/sub event {event.get('id')}")
            except _RetriableError as exc:
                error = exc
            if self._closed:
                # daprd: a delivery failing while its subscription closes waits for the
                # handler's context instead of failing, so the broker keeps the message.
                raise SubscriptionClosedError(str(error))
            if retry_policy is None:
                break
            delay = retry_policy.delay(retry, time.monotonic() - started)
            if delay is None:
                break
            await asyncio.sleep(delay)
            retry += 1
        await self._fail(route, message, error)

    async def _attempt(
        self,
        route: Route,
        event: Mapping[str, Any],
        body: bytes,
        path: str,
        headers: Mapping[str, str],
    ) -> Outcome:
        event_id = event.get("id")
        started = time.perf_counter()
        try:
            status, _, reply = await self._app.request("POST", path, headers, body)
        except AppUnreachableError as exc:
            self._ingress(route, "retry", "", started)
            message = f"error returned from app channel while sending pub/sub event to app: {exc}"
            logger.warning(
                "encountered a retriable error while publishing a subscribed message to topic "
                "%s, err: %s",
                route.topic,
                message,
            )
            raise _RetriableError(message) from None
        outcome, app_status = interpret_response(status, reply)
        self._ingress(route, *_INGRESS[outcome], started)
        if outcome is Outcome.SUCCESS:
            return outcome
        if outcome is Outcome.DROP:
            logger.warning(
                "DROP status returned from app while processing pub/sub event %s", event_id
            )
            return outcome
        if outcome is Outcome.NOT_FOUND:
            logger.error(
                "non-retriable error returned from app while processing pub/sub event %s: %s. "
                "status code returned: %s",
                event_id,
                reply[:200].decode("utf-8", errors="replace"),
                status,
            )
            return outcome
        if app_status == "RETRY":
            text = f"RETRY status returned from app while processing pub/sub event {event_id}"
        elif app_status:
            text = (
                f"unknown status returned from app while processing pub/sub event {event_id}, "
                f"status: {app_status}"
            )
        else:
            text = (
                f"retriable error returned from app while processing pub/sub event {event_id}, "
                f"topic: {event.get('topic')}, body: "
                f"{reply[:200].decode('utf-8', errors='replace')}. status code returned: {status}"
            )
        logger.warning(
            "encountered a retriable error while publishing a subscribed message to topic %s, "
            "err: %s",
            route.topic,
            text,
        )
        raise _RetriableError(text)

    def _ingress(self, route: Route, process_status: str, status: str, started: float) -> None:
        """One attempt's outcome, recorded as daprd's HTTP postman records it."""
        if self._metrics is not None:
            elapsed = ms_since(started)
            self._metrics.pubsub_ingress(
                route.pubsubname, process_status, status, route.topic, elapsed
            )

    def _headers(self, route: Route, message: Message, event: Mapping[str, Any]) -> dict[str, str]:
        # daprd forwards the broker message metadata as HTTP headers (WithCustomHTTPMetadata).
        headers = {
            key: value
            for key, value in message.metadata.items()
            if key.lower() not in _RESERVED_HEADERS
            and _HEADER_NAME.match(key)
            and value.isascii()
            and "\n" not in value
            and "\r" not in value
        }
        headers["pubsubName"] = route.pubsubname
        headers["Content-Type"] = cloudevents.CLOUDEVENT_CONTENT_TYPE
        trace = event.get("traceparent") or event.get("traceid")
        if isinstance(trace, str) and trace:
            headers["traceparent"] = trace
        state = event.get("tracestate")
        if isinstance(state, str) and state:
            headers["tracestate"] = state
        return headers

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
