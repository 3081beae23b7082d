"""The transactional outbox: a state transaction that also publishes its upserts, losing none.

daprd's design (pkg/runtime/pubsub/outbox.go): before the commit, each upsert's CloudEvent is
published to an internal topic, its id the key of a marker row that the transaction itself
writes. The sidecar consumes the internal topic, publishes the event to the user's topic only
once the marker is committed, then deletes the marker; so a crash between commit and publish
leaves an unacknowledged internal message that is redelivered, and a failed commit publishes
nothing.

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc

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
#: Pauses before each look for the marker, and before each try of its delete (about 10 s in
#: all, as daprd's backoff: 500 ms growing by 3 up to 3 s, given up past 10 s, after a first
#: pause of 1 s). The message of a transaction made by ANOTHER sidecar of the app (the internal
#: topic's group is the app id, so replicas compete) is often read a few milliseconds before that
#: sidecar commits: look again soon, or the event is late by the first pause.
_MARKER_WAITS = (0.0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 3.0)
#: Seconds after the first try past which no pause is begun (daprd's MaxElapsedTime): the
#: schedule ends sooner when the store is slow to answer or to fail.
_MARKER_PATIENCE = 10.0
_OUTCOME_TTL = 120.0  #: seconds an unclaimed transaction outcome is kept
_RELAY_FAILED = "failed to publish outbox topic to pubsub %s: the event of %s cannot be read: %s"
_LOOKUP_FAILED = "failed to publish outbox topic to pubsub %s: %s, %s"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUTHY


class MarkerMissing(LookupError):
    """The marker of an internal message is not (yet) in the store."""


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


class ProjectionPanic(Exception):
    """A transaction daprd 1.18's outbox panics on (see ``take_projections``)."""


def take_projections(
    operations: Sequence[SetRequest | DeleteRequest],
) -> tuple[list[SetRequest | DeleteRequest], dict[str, SetRequest]]:
    """The operations left to apply, and the projections by key, as daprd 1.18.3's
    PublishInternal takes them out: ranging over the operations while removing each projection
    with ``append(operations[:i], operations[i+1:]...)``. The range goes on over the original
    slice, whose array the removals shift: the operation after a projection is skipped, and
    the last ones are read again. So a projection right after another is kept as a plain
    upsert, and a projection read past the shortened length panics (``slice bounds out of
    range``): with several records each ahead of its projection, for one. A projection ahead
    of its record, for each key, reads right. The last projection of a key wins.
    """
    array = list(operations)
    length = len(array)
    projections: dict[str, SetRequest] = {}
    for index in range(len(array)):
        op = array[index]
        if not isinstance(op, SetRequest) or not _truthy(op.metadata.get("outbox.projection")):
            continue
        projections[op.key] = op
        if index + 1 > length:
            raise ProjectionPanic(
                f"daprd 1.18's outbox panics on this transaction (runtime error: slice bounds "
                f"out of range [{index + 1}:{length}]): put each projection ahead of its record"
            )
        array[index : length - 1] = array[index + 1 : length]
        length -= 1
    return array[:length], projections


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
        #: Marker reads and deletes are the runtime's own, not API calls: not in the metrics,
        #: and under the marker's own key, as daprd stores it (no ``keyPrefix``).
        self._markers = state.unrecorded(prefixed=False)
        #: Where earlier releases of this sidecar kept them: with the app's key prefix.
        self._prefixed_markers = state.unrecorded()
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
                # As many workers as the component's ``concurrency`` (contrib's pubsub.redis
                # starts that many per component).
                await pubsub.subscribe(topic, self._handler(config), concurrency=0)

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
        try:
            kept, projections = take_projections(operations)
        except ProjectionPanic as exc:
            # daprd's process would crash here; failing the call is as close as is useful.
            logger.error("outbox: %s", exc)
            raise DaprError(
                "ERR_STATE_TRANSACTION",
                f"error while executing state transaction: {exc}",
                500,
                grpc.StatusCode.INTERNAL,
            ) from None
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
                # daprd's internal message: the CloudEvent as json.Marshal writes it.
                internal.append(BulkEntry(marker, marshal(event)))
            await self._publish_internal(config.outbox_pubsub, topic, internal)
            await self._state.transact(store, kept, metadata, unprefixed=markers)
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
        """daprd's relay (SubscribeToInternalTopics): publish the event once its marker is
        committed, then delete the marker."""
        event, marker, prefixed = _internal_event(message.data)
        markers = self._prefixed_markers if prefixed else self._markers
        outcome = self._outcomes.pop(marker, None)
        known = await outcome if outcome is not None else None
        if known is False:
            logger.info("outbox: the transaction of %s failed; nothing to publish", marker)
            return
        if known is None:
            missing = (
                f"cannot publish outbox message to topic {config.publish_topic} with pubsub "
                f"{config.publish_pubsub}: outbox state not found"
            )
            try:
                # A read that fails is retried as one that finds nothing, as in daprd: a short
                # outage of the store must not lose the event.
                await _retried(lambda: _find_marker(markers, config.store, marker, missing))
            except Exception as exc:
                problem = _store_error(exc)
                discard = config.discard_when_missing
                then = "discarding message" if discard else "rejecting for later processing"
                logger.error(_LOOKUP_FAILED, config.publish_pubsub, problem, then)
                if discard:
                    return
                raise problem from None
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
        try:
            await _retried(lambda: markers.delete(config.store, marker))
        except Exception as exc:
            raise _store_error(exc) from None

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


def _same_redis(store: StateStore, pubsub: PubSub | None) -> bool:
    """Whether the store can write the pubsub's stream entries itself (the direct path)."""
    return (
        isinstance(store, StreamAppendingStore)
        and isinstance(pubsub, StreamPublisher)
        and store.endpoint == pubsub.endpoint
    )


async def _find_marker(markers: StateService, store: str, marker: str, missing: str) -> None:
    found = await markers.get(store, marker, {})
    if found is None or not found.data:
        raise MarkerMissing(missing)


def _internal_event(data: bytes) -> tuple[dict[str, Any], str, bool]:
    """The event of an internal message, its marker's key, and whether that key is stored
    with the app's key prefix.

    daprd's message is the CloudEvent itself, its ``id`` the marker's key (stored as it is);
    an id that is missing or no string reads as "" (cloudEventExtractorFn), a marker never
    found. Earlier releases of this sidecar wrapped the event, ``{"marker": key, "event":
    CloudEvent}``, and stored the marker under the prefixed key: messages they left on the
    topic are relayed too.
    """
    # daprd's relay reads the event with json.Unmarshal: numbers become float64s, and one
    # no float64 holds fails the message every time it comes.
    message = json_reader.loads(data, as_float64)
    if message is None:  # Go leaves the map nil: no id
        message = {}
    if not isinstance(message, dict):
        raise ValueError("outbox: the internal message is no JSON object")
    prefixed = message.keys() == {"marker", "event"} and isinstance(message["event"], dict)
    if prefixed:
        message, key = message["event"], message["marker"]
    else:
        key = message.get("id")
    return message, key if isinstance(key, str) else "", prefixed


async def _retried(attempt: Callable[[], Awaitable[object]]) -> None:
    """Try until ``attempt`` succeeds, after each of the ``_MARKER_WAITS`` pauses, beginning
    none past ``_MARKER_PATIENCE``; then raise its last error (daprd's backoff.Retry)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    last = len(_MARKER_WAITS) - 1
    for index, pause in enumerate(_MARKER_WAITS):
        await asyncio.sleep(pause)
        try:
            await attempt()
            return
        except Exception:
            if index == last or loop.time() - started + _MARKER_WAITS[index + 1] > _MARKER_PATIENCE:
                raise


def _store_error(exc: Exception) -> Exception:
    """The store's own error inside the state API's (daprd calls the store directly)."""
    cause = exc.__cause__
    return cause if isinstance(exc, DaprError) and isinstance(cause, Exception) else exc
