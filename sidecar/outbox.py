"""The transactional outbox: a state transaction that also publishes its upserts, losing none.

daprd's design (pkg/runtime/pubsub/outbox.go): before the commit, each upsert is published to an
internal topic together with the key of a marker row that the transaction itself writes. The
sidecar consumes the internal topic, publishes the event to the user's topic only once the
marker is committed, then deletes the marker; so a crash between commit and publish leaves an
unacknowledged internal message that is redelivered, and a failed commit publishes nothing.

When the store is ``state.redis`` and the publishing pubsub ``pubsub.redis`` on the same Redis
(as ``dapr init`` sets them up), there is a shorter way to the same guarantee: each upsert's
script also appends its event to the topic's stream, so the write and its event are one atomic
step, and the internal topic, the marker and the relay are not needed. What subscribers receive
is the same event, sooner; the internal topic is still consumed, for messages left there by
daprd or by a sidecar that went the long way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
import orjson

from sidecar import cloudevents, json_reader
from sidecar.components import Component
from sidecar.errors import DaprError
from sidecar.go_marshal import Numbers, OutOfRange, as_float64, as_text, marshal
from sidecar.publishing import Publisher
from sidecar.pubsub.base import (
    BulkEntry,
    Message,
    PublishError,
    PubSub,
    StreamPublisher,
    SubscribeFailedError,
)
from sidecar.pubsub.scopes import not_allowed_message
from sidecar.state.base import (
    DeleteRequest,
    OutcomeUnknown,
    PartialTransaction,
    SetRequest,
    StateStore,
    StoreUnavailable,
    StreamAppend,
    StreamAppendingStore,
)
from sidecar.state_service import StateService

logger = logging.getLogger(__name__)

_TRUTHY = frozenset({"true", "1", "yes", "on", "y", "t"})
#: Pauses between looks for the marker before giving the message back (about 10 s in all, as
#: daprd). The message of a transaction made by ANOTHER sidecar of the app (the internal topic's
#: group is the app id, so replicas compete) is often read a few milliseconds before that
#: sidecar commits: look again soon, or the event is late by the first pause.
_MARKER_WAITS = (0.0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 3.0)
_CONSUMERS = 10
_OUTCOME_TTL = 120.0  #: seconds an unclaimed transaction outcome is kept
_RELAY_FAILED = "failed to publish outbox topic to pubsub %s: the event of %s cannot be read: %s"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUTHY


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    store: str
    publish_pubsub: str  #: outboxPublishPubsub: where the user's subscribers listen
    publish_topic: str  #: outboxPublishTopic
    outbox_pubsub: str  #: outboxPubsub: carries the internal topic (default publish_pubsub)
    discard_when_missing: bool  #: outboxDiscardWhenMissingState


def outbox_config(component: Component) -> OutboxConfig | None:
    meta = component.metadata
    pubsub, topic = meta.get("outboxPublishPubsub", ""), meta.get("outboxPublishTopic", "")
    if not pubsub or not topic:
        return None
    return OutboxConfig(
        store=component.name,
        publish_pubsub=pubsub,
        publish_topic=topic,
        outbox_pubsub=meta.get("outboxPubsub") or pubsub,
        discard_when_missing=_truthy(meta.get("outboxDiscardWhenMissingState")),
    )


def internal_topic(app_id: str, topic: str, namespace: str) -> str:
    """daprd's name for the internal topic: namespace + app id + topic + "outbox" (outside
    Kubernetes the namespace is "default", unless NAMESPACE is set)."""
    return f"{namespace}{app_id}{topic}outbox"


def outbox_error(app_id: str, exc: Exception) -> DaprError:
    return DaprError(
        "ERR_PUBLISH_OUTBOX",
        f"error while publishing outbox message: {exc}",
        500,
        grpc.StatusCode.INTERNAL,
        reason="DAPR_PUBSUB_OUTBOX",
        metadata={"appID": app_id, "error": str(exc)},
    )


def outbox_event(
    op: SetRequest,
    payload: SetRequest,
    config: OutboxConfig,
    app_id: str,
    marker: str,
    traceparent: str,
    numbers: Numbers = as_text,
) -> dict[str, Any]:
    """The CloudEvent announcing one upsert; ``payload`` is the op itself or its projection.

    As daprd builds it (pkg/runtime/pubsub/outbox.go): the marker as id, the app as source, the
    default type, the call's trace in ``traceid`` (``traceparent`` stays empty), the internal
    topic's pubsub; then every metadata entry of the stored op is copied on as is, but ``data``
    and ``id``. So ``type``, ``subject`` or ``traceparent`` there set those fields, while
    ``cloudevent.type`` is no override here but a field of that very name.
    """
    event = cloudevents.new_envelope(
        data=payload.value if payload.event_data is None else payload.event_data,
        content_type=payload.metadata.get("contentType", ""),
        topic="",
        pubsubname=config.outbox_pubsub,
        source=app_id,
        traceparent="",
        metadata={"cloudevent.id": marker},
        numbers=numbers,
    )
    event["traceid"] = traceparent or cloudevents.new_traceparent()
    for key, value in op.metadata.items():
        if key not in ("data", "id"):
            event[key] = value
    return event


class Outbox:
    def __init__(
        self,
        configs: Mapping[str, OutboxConfig],
        pubsubs: Mapping[str, PubSub],
        state: StateService,
        app_id: str,
        namespace: str = "default",
        direct: Mapping[str, StreamPublisher] | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self._configs = configs
        #: daprd's outbox publishes through the publisher adapter, both to the internal topic
        #: and to the user's: the app's topic scopes and the pubsub's outbound policy apply.
        self._publisher = publisher or Publisher(pubsubs, app_id)
        self._may_publish = self._publisher.may_publish
        #: Stores whose events their own writes append to the publishing pubsub's streams.
        self._direct = direct or {}
        self._pubsubs = pubsubs
        self._state = state
        #: Marker reads and deletes are the runtime's own, not API calls: not in the metrics.
        self._markers = state.unrecorded()
        self._app_id = app_id
        self._namespace = namespace
        #: Outcome (committed?) of this process's transactions, by marker: the consumer waits
        #: for it instead of trusting the marker alone, which a non-atomic store (state.redis)
        #: may write even when another operation of the transaction failed.
        #: None: unknown (the store went away mid-transaction), so the marker decides.
        self._outcomes: dict[str, asyncio.Future[bool | None]] = {}
        self._closed = False

    @classmethod
    def from_components(
        cls,
        stores: Mapping[str, tuple[StateStore, Component]],
        pubsubs: Mapping[str, PubSub],
        state: StateService,
        app_id: str,
        *,
        namespace: str = "default",
        publisher: Publisher | None = None,
    ) -> Outbox | None:
        configs = {}
        direct: dict[str, StreamPublisher] = {}
        for name, (store, component) in stores.items():
            config = outbox_config(component)
            if config is not None:
                configs[name] = config
                target = pubsubs.get(config.publish_pubsub)
                if _same_redis(store, target):
                    direct[name] = cast(StreamPublisher, target)
        if not configs:
            return None
        return cls(configs, pubsubs, state, app_id, namespace, direct, publisher)

    def enabled(self, store: str) -> bool:
        return store in self._configs

    async def start(self) -> None:
        """Consume the internal topics (daprd: SubscribeToInternalTopics)."""
        for config in self._configs.values():
            pubsub = self._pubsubs.get(config.outbox_pubsub)
            if pubsub is None:
                logger.warning(
                    "could not subscribe to internal outbox topic: outbox pubsub %s not loaded",
                    config.outbox_pubsub,
                )
                continue
            topic = internal_topic(self._app_id, config.publish_topic, self._namespace)
            # daprd ignores Subscribe's error here (the component logged it): no retry.
            with contextlib.suppress(SubscribeFailedError):
                await pubsub.subscribe(topic, self._handler(config), concurrency=_CONSUMERS)

    async def close(self) -> None:
        self._closed = True

    async def transact(
        self,
        store: str,
        operations: Sequence[SetRequest | DeleteRequest],
        metadata: Mapping[str, str],
        traceparent: str = "",
    ) -> None:
        """Publish the internal messages, then commit the transaction with their markers."""
        config = self._configs[store]
        pubsub = self._pubsubs.get(config.outbox_pubsub)
        if pubsub is None:
            missing = Exception(f"pubsub '{config.outbox_pubsub}' not found")  # NotFoundError
            raise outbox_error(self._app_id, missing)
        topic = internal_topic(self._app_id, config.publish_topic, self._namespace)
        if not self._may_publish(config.outbox_pubsub, topic):
            raise outbox_error(self._app_id, Exception(not_allowed_message(topic, self._app_id)))
        projections = {
            op.key: op
            for op in operations
            if isinstance(op, SetRequest) and _truthy(op.metadata.get("outbox.projection"))
        }
        kept = [
            op
            for op in operations
            if not (isinstance(op, SetRequest) and _truthy(op.metadata.get("outbox.projection")))
        ]
        publisher = self._direct.get(store)
        # Where the app may not publish the event, daprd's relay fails after the commit: the
        # long way does the same.
        if publisher is not None and self._may_publish(config.publish_pubsub, config.publish_topic):
            await self._transact_direct(config, publisher, kept, projections, metadata, traceparent)
            return
        markers: list[SetRequest] = []
        outcomes: list[tuple[int, asyncio.Future[bool | None]]] = []  #: (index in kept, outcome)
        loop = asyncio.get_running_loop()
        try:
            internal: list[BulkEntry] = []
            for index, op in enumerate(kept):
                if not isinstance(op, SetRequest):
                    continue
                marker = f"outbox-{uuid.uuid4()}"
                event = outbox_event(
                    op, projections.get(op.key, op), config, self._app_id, marker, traceparent
                )
                outcome: asyncio.Future[bool | None] = loop.create_future()
                self._outcomes[marker] = outcome
                outcomes.append((index, outcome))
                markers.append(SetRequest(key=marker, value=b"0"))
                data = orjson.dumps({"marker": marker, "event": event})
                internal.append(BulkEntry(marker, data))
            await self._publish_internal(config.outbox_pubsub, topic, internal)
            await self._state.transact(store, [*kept, *markers], metadata)
        except BaseException as exc:
            if isinstance(exc.__cause__, OutcomeUnknown):
                # Applied or not, its markers tell (the relays look them up): keep them.
                for _, outcome in outcomes:
                    outcome.set_result(None)
                loop.call_later(_OUTCOME_TTL, self._drop_outcomes, markers)
                raise
            # A non-atomic store may have applied some operations: publish exactly those.
            partial = exc.__cause__ if isinstance(exc.__cause__, PartialTransaction) else None
            applied = partial.applied if partial is not None else frozenset()
            lost: list[SetRequest] = []
            for (index, outcome), row in zip(outcomes, markers, strict=False):
                outcome.set_result(index in applied)
                if index not in applied:
                    lost.append(row)
            await self._forget_markers(store, lost)
            loop.call_later(_OUTCOME_TTL, self._drop_outcomes, markers)
            raise
        for _, outcome in outcomes:
            outcome.set_result(True)
        # Entries the consumer never claims (another replica got the message) expire.
        loop.call_later(_OUTCOME_TTL, self._drop_outcomes, markers)

    async def _transact_direct(
        self,
        config: OutboxConfig,
        pubsub: StreamPublisher,
        operations: Sequence[SetRequest | DeleteRequest],
        projections: Mapping[str, SetRequest],
        metadata: Mapping[str, str],
        traceparent: str,
    ) -> None:
        """Commit with each upsert's event appended by the store in the same step."""
        appends: dict[int, StreamAppend] = {}
        for index, op in enumerate(operations):
            if not isinstance(op, SetRequest):
                continue
            try:
                # The event as daprd's relay publishes it: read back from the internal topic
                # by json.Unmarshal, so its numbers are float64s.
                event = outbox_event(
                    op,
                    projections.get(op.key, op),
                    config,
                    self._app_id,
                    f"outbox-{uuid.uuid4()}",
                    traceparent,
                    as_float64,
                )
            except OutOfRange as exc:
                # There the relay fails on it for good after the commit: no event.
                logger.error(_RELAY_FAILED, config.publish_pubsub, op.key, exc)
                continue
            event["topic"] = config.publish_topic
            event["pubsubname"] = config.publish_pubsub
            appends[index] = pubsub.stream_append(config.publish_topic, marshal(event), {})
        try:
            await self._state.transact(config.store, operations, metadata, appends)
        except DaprError as exc:
            cause = exc.__cause__
            if isinstance(cause, StoreUnavailable) and not isinstance(cause, OutcomeUnknown):
                # Nothing reached Redis. daprd fails here too, at the internal publish that
                # comes before its commit, and says so with the outbox's error.
                raise outbox_error(self._app_id, cause) from None
            raise

    def _drop_outcomes(self, markers: Sequence[SetRequest]) -> None:
        for marker in markers:
            self._outcomes.pop(marker.key, None)

    async def _forget_markers(self, store: str, markers: Sequence[SetRequest]) -> None:
        """Best effort: remove markers a partly applied transaction may have written."""
        for marker in markers:
            try:
                await self._markers.delete(store, marker.key)
            except Exception as exc:  # the consumer's own check still guards the publish
                logger.debug("outbox: could not remove marker %s: %s", marker.key, exc)

    def _handler(self, config: OutboxConfig) -> Any:
        async def handle(message: Message) -> None:
            if self._closed:
                raise RuntimeError("outbox is closing")
            await self._relay(config, message)

        return handle

    async def _relay(self, config: OutboxConfig, message: Message) -> None:
        # daprd's relay reads the event with json.Unmarshal: numbers become float64s, and one
        # no float64 holds fails the message every time it comes.
        internal = json_reader.loads(message.data, as_float64)
        marker, event = str(internal["marker"]), internal["event"]
        outcome = self._outcomes.pop(marker, None)
        known = await outcome if outcome is not None else None
        if known is False:
            logger.info("outbox: the transaction of %s failed; nothing to publish", marker)
            return
        committed = known or await self._committed(config.store, marker)
        if not committed:
            if config.discard_when_missing:
                logger.error(
                    "failed to publish outbox topic to pubsub %s: outbox state not found, "
                    "discarding message",
                    config.publish_pubsub,
                )
                return
            raise LookupError(
                f"cannot publish outbox message to topic {config.publish_topic} with pubsub "
                f"{config.publish_pubsub}: outbox state not found, rejecting for later processing"
            )
        if config.publish_pubsub not in self._pubsubs:
            raise LookupError(f"outbox: pubsub {config.publish_pubsub} not found")
        if not self._may_publish(config.publish_pubsub, config.publish_topic):
            raise PermissionError(
                "failed to publish outbox topic to pubsub "
                f"{config.publish_pubsub}: "
                + not_allowed_message(config.publish_topic, self._app_id)
            )
        event["topic"] = config.publish_topic
        event["pubsubname"] = config.publish_pubsub
        data = marshal(event)
        await self._publisher.send(config.publish_pubsub, config.publish_topic, data, {})
        await self._markers.delete(config.store, marker)

    async def _publish_internal(self, pubsub: str, topic: str, entries: list[BulkEntry]) -> None:
        """The internal messages of one transaction, in one round trip when there are several
        (daprd publishes them one by one; nothing a client sees depends on it)."""
        try:
            if len(entries) == 1:
                await self._publisher.send(pubsub, topic, entries[0].data, {})
                return
            failed = await self._publisher.send_bulk(pubsub, topic, entries) if entries else []
        except (PublishError, OSError) as exc:
            raise outbox_error(self._app_id, exc) from None
        if failed:
            problem = PublishError(f"{len(failed)} of {len(entries)} not published")
            raise outbox_error(self._app_id, problem)

    async def _committed(self, store: str, marker: str) -> bool:
        for wait in _MARKER_WAITS:
            await asyncio.sleep(wait)
            found = await self._markers.get(store, marker, {})
            if found is not None and found.data:
                return True
        return False


def _same_redis(store: StateStore, pubsub: PubSub | None) -> bool:
    """Whether the store can write the pubsub's stream entries itself (the direct path)."""
    return (
        isinstance(store, StreamAppendingStore)
        and isinstance(pubsub, StreamPublisher)
        and store.endpoint == pubsub.endpoint
    )
