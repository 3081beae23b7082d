"""``SubscribeTopicEventsAlpha1``: a client subscribes to a topic over one bidirectional stream.

As daprd's ``pkg/api/grpc/subscribe.go``: the first message must be the initial request
(pubsub, topic, metadata, dead letter topic); the sidecar then starts the subscription, answers
with the initial response and streams the topic's events, each answered by the client with its
id and a status. The subscription ends with the stream: a client that cancels, half-closes or
sends a second initial request, or the sidecar shutting down ("stream closed").
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc

from sidecar.components import Subscription
from sidecar.delivery import SubscribeError
from sidecar.errors import DaprError, abort
from sidecar.postman_stream import EventStream

if TYPE_CHECKING:
    from sidecar.runtime import Runtime

logger = logging.getLogger(__name__)

_EOF = "EOF"  #: what daprd's handler returns when the client half-closes (io.EOF)


async def subscribe_topic_events(runtime: Runtime, context: Any) -> None:
    first = await context.read()
    if first is grpc.aio.EOF:
        await context.abort(grpc.StatusCode.UNKNOWN, _EOF)
    if not first.HasField("initial_request"):
        await context.abort(grpc.StatusCode.UNKNOWN, "initial request is required")
    initial = first.initial_request
    if not initial.pubsub_name:
        await context.abort(grpc.StatusCode.UNKNOWN, "pubsubName is required")
    if not initial.topic:
        await context.abort(grpc.StatusCode.UNKNOWN, "topic is required")
    subscription = Subscription(
        pubsubname=initial.pubsub_name,
        topic=initial.topic,
        default_path="/",
        metadata=dict(initial.metadata),
        dead_letter_topic=initial.dead_letter_topic,
        source="streaming",
    )
    stream = EventStream(context.write, runtime.next_subscriber_index(), runtime.metrics)
    try:
        consumers = await runtime.deliverer.subscribe_stream(subscription, stream)
    except DaprError as err:
        await abort(context, err)
    except SubscribeError as exc:
        await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
    reason = ""
    try:
        await stream.open()
        logger.info(
            "Subscribing to pubsub '%s' topic '%s' ConnectionID %d",
            initial.pubsub_name,
            initial.topic,
            stream.connection_id,
        )
        reason = await _until_ended(context, stream, subscription)
    except asyncio.CancelledError:
        logger.info("Unsubscribed from pubsub '%s' topic '%s'", initial.pubsub_name, initial.topic)
        raise
    finally:
        stream.close("stream closed")
        await runtime.deliverer.unsubscribe_stream(consumers)
    await context.abort(grpc.StatusCode.UNKNOWN, reason)


async def _until_ended(context: Any, stream: EventStream, subscription: Subscription) -> str:
    """Hand the client's answers to the stream until either side ends it; why it ended."""
    reading = asyncio.ensure_future(_read_answers(context, stream, subscription))
    ended = asyncio.ensure_future(stream.ended.wait())
    try:
        await asyncio.wait((reading, ended), return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        ended.cancel()
    if reading.done() and not reading.cancelled():
        return reading.result()
    return stream.end_reason


async def _read_answers(context: Any, stream: EventStream, subscription: Subscription) -> str:
    while True:
        request = await context.read()
        if request is grpc.aio.EOF:
            logger.info(
                "Unsubscribed from pubsub '%s' topic '%s'",
                subscription.pubsubname,
                subscription.topic,
            )
            return _EOF
        if not request.HasField("event_processed"):
            return "duplicate initial request received"
        stream.answer(request.event_processed)
