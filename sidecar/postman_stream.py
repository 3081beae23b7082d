"""The streaming postman: subscribed events on a ``SubscribeTopicEventsAlpha1`` stream.

As daprd's ``pubsub/streamer`` and ``subscription/postman/streaming``: each event goes to the
client as a ``TopicEventRequest`` (the gRPC envelope of ``GRPCEnvelopeFromSubscriptionMessage``)
and the client answers it by event id with SUCCESS, RETRY or DROP. An event whose answer has
not come when the stream ends is left to the broker, which delivers it again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from dapr.proto.runtime.v1 import appcallback_pb2, pubsub_pb2
from google.protobuf import struct_pb2

from sidecar import cloudevents
from sidecar.go_values import encoding_json
from sidecar.metrics import ComponentMetrics, ms_since
from sidecar.postman import Outcome, RetriableError
from sidecar.pubsub.base import Message

logger = logging.getLogger(__name__)

#: CloudEvent fields the envelope carries as its own; every other one is an extension.
_ENVELOPE_FIELDS = frozenset(
    {"id", "source", "datacontenttype", "type", "specversion", "data", "data_base64"}
)
_UNEXPECTED_DATA = "unexpected data type encountered in envelope"
_STATUS = appcallback_pb2.TopicEventResponse


def _text(event: Mapping[str, Any], name: str) -> str:
    """daprd's ExtractCloudEventProperty: the field when it is a string, else empty."""
    value = event.get(name)
    return value if isinstance(value, str) else ""


def _is_string_content_type(content_type: str) -> bool:
    lower = content_type.lower()
    return lower.startswith("text/") or lower.split(";", 1)[0] == "application/xml"


def _data(event: Mapping[str, Any], content_type: str) -> bytes:
    """The envelope's data: ``data_base64`` decoded, a string as its text, JSON (for a JSON or
    CloudEvent content type) as Go marshals it; anything else travels as no data."""
    encoded = event.get("data_base64")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise ValueError(_UNEXPECTED_DATA)
        try:
            # Go's StdEncoding skips line breaks and insists on padding.
            cleaned = encoded.replace("\r", "").replace("\n", "")
            return base64.b64decode(cleaned, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"illegal base64 data: {exc}") from None
    data = event.get("data")
    if data is None:
        return b""
    if _is_string_content_type(content_type):
        if not isinstance(data, str):
            raise ValueError(_UNEXPECTED_DATA)
        return data.encode()
    if cloudevents.is_json_content_type(content_type) or cloudevents.is_cloudevent_content_type(
        content_type
    ):
        try:
            return encoding_json(data)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"unable to marshal data: {exc}") from None
    return b""


def topic_event_request(
    event: Mapping[str, Any], *, topic: str, pubsubname: str, path: str
) -> appcallback_pb2.TopicEventRequest:
    """The gRPC envelope of a subscribed event (ValueError when daprd could not build it)."""
    content_type = _text(event, "datacontenttype")
    extensions = struct_pb2.Struct()
    try:
        extensions.update({k: v for k, v in event.items() if k not in _ENVELOPE_FIELDS})
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(
            "error processing internal cloud event data: unable to unmarshal cloudEvent "
            f"extensions to proto struct: {exc}"
        ) from None
    return appcallback_pb2.TopicEventRequest(
        id=_text(event, "id"),
        source=_text(event, "source"),
        type=_text(event, "type"),
        spec_version=_text(event, "specversion"),
        data_content_type=content_type,
        data=_data(event, content_type),
        topic=topic,
        pubsub_name=pubsubname,
        path=path,
        extensions=extensions,
    )


Send = Callable[[pubsub_pb2.SubscribeTopicEventsResponseAlpha1], Awaitable[None]]


class EventStream:
    """One client's stream: sends events on it and hands each of the client's answers to the
    delivery waiting for that event id."""

    def __init__(
        self, send: Send, connection_id: int, metrics: ComponentMetrics | None = None
    ) -> None:
        self._send = send
        self.connection_id = connection_id
        self._metrics = metrics
        self._sending = asyncio.Lock()  #: one message at a time on the stream
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._opened = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason = ""

    async def open(self) -> None:
        """Send the initial response; events follow it, never precede it."""
        async with self._sending:
            await self._send(
                pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
                    initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1()
                )
            )
            self._opened.set()

    def close(self, reason: str) -> None:
        """End the stream from this side: deliveries waiting for an answer give up."""
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()

    def answer(self, processed: pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1) -> None:
        """The client's answer to one event."""
        waiting = self._waiting.get(processed.id)
        if waiting is None or waiting.done():
            logger.error(
                "no client stream expecting publish response for id %s ConnectionID%d",
                processed.id,
                self.connection_id,
            )
            return
        waiting.set_result(processed.status.status)

    async def post(
        self,
        pubsubname: str,
        topic: str,
        message: Message,
        event: Mapping[str, Any],
        body: bytes,
        path: str,
    ) -> Outcome:
        event_id = event.get("id")
        if self.ended.is_set():
            raise RetriableError("stream closed")
        try:
            envelope = topic_event_request(event, topic=topic, pubsubname=pubsubname, path=path)
        except ValueError as exc:
            self._ingress(pubsubname, topic, "retry", None)
            raise RetriableError(
                f"error returned from app while processing pub/sub event: {exc}"
            ) from None
        # As daprd, a later event with the same id takes the answer over.
        answered = asyncio.get_running_loop().create_future()
        self._waiting[envelope.id] = answered
        started = time.perf_counter()
        try:
            try:
                await self._opened.wait()
                async with self._sending:
                    await self._send(
                        pubsub_pb2.SubscribeTopicEventsResponseAlpha1(event_message=envelope)
                    )
            except Exception as exc:
                self._ingress(pubsubname, topic, "retry", started)
                raise RetriableError(
                    f"error returned from app while processing pub/sub event {event_id}: {exc}"
                ) from None
            status = await self._answer(answered)
        finally:
            if self._waiting.get(envelope.id) is answered:
                del self._waiting[envelope.id]
        return self._outcome(status, event_id, pubsubname, topic, started)

    async def _answer(self, answered: asyncio.Future[int]) -> int:
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait((answered, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if not answered.done():
            raise RetriableError("stream closed")
        return answered.result()

    def _outcome(
        self, status: int, event_id: object, pubsubname: str, topic: str, started: float
    ) -> Outcome:
        if status == _STATUS.SUCCESS:
            self._ingress(pubsubname, topic, "success", started)
            return Outcome.SUCCESS
        if status == _STATUS.DROP:
            logger.warning(
                "DROP status returned from app while processing pub/sub event %s", event_id
            )
            self._ingress(pubsubname, topic, "drop", started)
            return Outcome.DROP
        self._ingress(pubsubname, topic, "retry", started)
        if status == _STATUS.RETRY:
            raise RetriableError(
                f"RETRY status returned from app while processing pub/sub event {event_id}"
            )
        raise RetriableError(
            f"unknown status returned from app while processing pub/sub event {event_id}, "
            f"status: status:{status}"
        )

    def _ingress(
        self, pubsubname: str, topic: str, process_status: str, started: float | None
    ) -> None:
        """daprd's streaming postman records a drop with an empty status (HTTP's: success)."""
        if self._metrics is not None:
            elapsed = 0.0 if started is None else ms_since(started)
            self._metrics.pubsub_ingress(pubsubname, process_status, "", topic, elapsed)
