"""The protocol-independent publish API: envelope, TTL and raw payload handling, daprd's errors.

The HTTP and gRPC layers only parse requests and format results; everything a publisher can
observe (CloudEvent fields, error codes) is decided here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from sidecar import cloudevents
from sidecar.breaker import Breakers, CircuitBreaker
from sidecar.errors import DaprError
from sidecar.go_marshal import marshal
from sidecar.metrics import ComponentMetrics, ms_since
from sidecar.policy_runner import run
from sidecar.pubsub.base import BulkEntry, PublishError, PubSub
from sidecar.pubsub.scopes import UNSCOPED, TopicScopes, not_allowed_message
from sidecar.resiliency import Policy, Resiliency

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishEntry:
    """One event of a bulk publish, as the API receives it."""

    entry_id: str
    data: bytes
    content_type: str = ""
    #: The entry's own metadata; None when it has none (Go's nil map: daprd then gives it no
    #: metadata at all, not even the request's).
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class FailedEntry:
    entry_id: str
    error: str


def pubsub_not_found(name: str, metadata: Mapping[str, str] | None = None) -> DaprError:
    """daprd's PubSub(name).WithMetadata(metadata).NotFound(): the only pub/sub error without a
    ResourceInfo. Its HTTP publish handlers pass the request's metadata, its gRPC API and
    subscriber nil (pkg/api/http/http.go and pkg/api/grpc/grpc.go
    validateAndGetPubsubAndTopic, processor/subscriber StartStreamerSubscription)."""
    return DaprError(
        error_code="ERR_PUBSUB_NOT_FOUND",
        message=f"pubsub {name} is not found",
        http_status=404,
        grpc_code=grpc.StatusCode.INVALID_ARGUMENT,
        reason="DAPR_PUBSUB_NOT_FOUND",
        metadata=None if metadata is None else dict(metadata),
    )


def _pubsub_error(
    name: str,
    error_code: str,
    message: str,
    http_status: int,
    grpc_code: grpc.StatusCode,
    reason: str,
    metadata: Mapping[str, str],
) -> DaprError:
    """daprd's PubSubMetadataError.build (pkg/api/errors/pubsub.go): the ResourceInfo of a
    pub/sub error repeats its message as the description."""
    return DaprError(
        error_code=error_code,
        message=message,
        http_status=http_status,
        grpc_code=grpc_code,
        reason=reason,
        metadata=dict(metadata),
        resource=("pubsub", name),
        resource_description=message,
    )


def topic_empty(name: str, metadata: Mapping[str, str]) -> DaprError:
    """PubSub(name).WithMetadata(request metadata).TopicEmpty()."""
    return _pubsub_error(
        name,
        "ERR_TOPIC_NAME_EMPTY",
        f"topic is empty in pubsub {name}",
        404,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DAPR_PUBSUB_TOPIC_NAME_EMPTY",
        metadata,
    )


def publish_failed(name: str, topic: str, exc: Exception) -> DaprError:
    return _pubsub_error(
        name,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        f"error when publishing to topic {topic} in pubsub {name}: {exc}",
        500,
        grpc.StatusCode.INTERNAL,
        "DAPR_PUBSUB_PUBLISH_MESSAGE",
        {"topic": topic, "error": str(exc)},
    )


def pubsub_name_empty(metadata: Mapping[str, str]) -> DaprError:
    """daprd's PubSub("").WithMetadata(md).NameEmpty() (pkg/api/errors/pubsub.go): its
    gRPC publish methods check the name before looking the pubsub up."""
    return _pubsub_error(
        "",
        "ERR_PUBSUB_EMPTY",
        "pubsub name is empty",
        404,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DAPR_PUBSUB_NAME_EMPTY",
        metadata,
    )


def publish_forbidden(name: str, topic: str, app_id: str) -> DaprError:
    """The topic is outside the app's scopes on the pubsub (daprd's PublishForbidden)."""
    message = not_allowed_message(topic, app_id)
    return _pubsub_error(
        name,
        "ERR_PUBSUB_FORBIDDEN",
        message,
        403,
        grpc.StatusCode.PERMISSION_DENIED,
        "DAPR_PUBSUB_FORBIDDEN",
        {"topic": topic, "error": message},
    )


def metadata_unreadable(name: str, metadata: Mapping[str, str], exc: Exception) -> DaprError:
    """daprd's DeserializeError: the publish metadata's rawPayload is no Go boolean."""
    return _pubsub_error(
        name,
        "ERR_PUBSUB_REQUEST_METADATA",
        f"failed deserializing metadata. Error: {exc}",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DAPR_PUBSUB_METADATA_DESERIALIZATION",
        metadata,
    )


def cloudevent_failed(name: str, app_id: str, exc: Exception) -> DaprError:
    """PubSub(name).WithAppError(appID, err).CloudEventCreation(): the message names no cause,
    the ErrorInfo metadata carries it."""
    return _pubsub_error(
        name,
        "ERR_PUBSUB_CLOUD_EVENTS_SER",
        "cannot create cloudevent",
        500,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DAPR_PUBSUB_CLOUD_EVENT_CREATION",
        {"appID": app_id, "error": str(exc)},
    )


def bad_entries(name: str, topic: str, app_id: str) -> DaprError:
    why = "entryId is duplicated or not present for entry"
    return _pubsub_error(
        name,
        "ERR_PUBSUB_EVENTS_SER",
        f"error marshaling events to bytes for topic {topic} pubsub {name}. error: {why}",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DAPR_PUBSUB_MARSHAL_EVENTS",
        {"appID": app_id, "error": why},
    )


def bulk_body_unreadable(name: str, topic: str, app_id: str, exc: Exception) -> DaprError:
    """The HTTP bulk publish body is no JSON array of entries (daprd's UnmarshalEvents)."""
    return _pubsub_error(
        name,
        "ERR_PUBSUB_EVENTS_SER",
        f"error when unmarshaling the request for topic {topic} pubsub {name}: {exc}",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DAPR_PUBSUB_UNMARSHAL_EVENTS",
        {"appID": app_id},
    )


def bulk_event_unconvertible(name: str, topic: str, app_id: str, exc: Exception) -> DaprError:
    """An HTTP bulk entry's event does not fit its contentType (daprd's MarshalEnvelope)."""
    return _pubsub_error(
        name,
        "ERR_PUBSUB_EVENTS_SER",
        f"error when marshalling cloud event envelope for topic {topic} pubsub {name}: {exc}",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DAPR_PUBSUB_MARSHAL_ENVELOPE",
        {"appID": app_id, "error": str(exc)},
    )


class Publisher:
    def __init__(
        self,
        pubsubs: Mapping[str, PubSub],
        app_id: str,
        metrics: ComponentMetrics | None = None,
        scopes: Mapping[str, TopicScopes] | None = None,
        resiliency: Resiliency | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self._pubsubs = pubsubs
        self._app_id = app_id
        self._metrics = metrics
        self._scopes = scopes or {}
        breakers = breakers or Breakers()
        #: Each pubsub's outbound resiliency policy and breaker; publishes run under them.
        self._policies: dict[str, tuple[Policy, CircuitBreaker | None]] = {}
        for name in pubsubs:
            policy = (resiliency or Resiliency()).component_outbound(name, "Pubsub")
            if not policy.empty:
                breaker = breakers.component(policy.breaker, name) if policy.breaker else None
                self._policies[name] = (policy, breaker)

    async def send(self, pubsubname: str, topic: str, data: bytes, meta: Mapping[str, str]) -> None:
        """Hand one message, as it is, to a loaded pubsub's broker, under its outbound policy
        if it has one (daprd's publisher adapter, which the outbox publishes through too).
        No envelope, no scope check; raises PublishError."""
        component = self._pubsubs[pubsubname]
        policy = self._policies.get(pubsubname)
        if policy is None:
            await component.publish(topic, data, meta)
            return
        name = f"component[{pubsubname}] output"
        await run(*policy, lambda: component.publish(topic, data, meta), PublishError, (), name)

    def may_publish(self, pubsubname: str, topic: str) -> bool:
        """Whether the app's scopes on the pubsub let it publish to ``topic``."""
        return self._scopes.get(pubsubname, UNSCOPED).may_publish(topic)

    def _check_scope(self, pubsubname: str, topic: str) -> None:
        """As daprd's publisher: after the request is read and enveloped, before the broker."""
        if not self.may_publish(pubsubname, topic):
            raise publish_forbidden(pubsubname, topic, self._app_id)

    def _component(self, pubsubname: str, topic: str, metadata: Mapping[str, str]) -> PubSub:
        component = self._pubsubs.get(pubsubname)
        if component is None:
            raise pubsub_not_found(pubsubname)
        if not topic:
            raise topic_empty(pubsubname, metadata)
        return component

    def validate(self, pubsubname: str, topic: str, metadata: Mapping[str, str]) -> None:
        """What daprd's HTTP API checks before it reads a publish's body (http.go
        validateAndGetPubsubAndTopic); raises DaprError. Unlike the gRPC API's, its unknown
        pubsub error carries the request's metadata."""
        if pubsubname not in self._pubsubs:
            raise pubsub_not_found(pubsubname, metadata)
        self._validated(pubsubname, topic, metadata)

    def _validated(
        self, pubsubname: str, topic: str, metadata: Mapping[str, str]
    ) -> tuple[PubSub, bool]:
        """The pubsub and the request's rawPayload, as daprd's validateAndGetPubsubAndTopic."""
        component = self._component(pubsubname, topic, metadata)
        try:
            return component, cloudevents.is_raw_payload(metadata)
        except ValueError as exc:
            raise metadata_unreadable(pubsubname, metadata, exc) from None

    def envelope(
        self,
        pubsubname: str,
        topic: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        *,
        raw: bool,
        traceparent: str = "",
        tracestate: str = "",
    ) -> bytes:
        """The bytes daprd hands the broker for one event (raises CloudEventError)."""
        if raw:
            return data
        trace = traceparent or cloudevents.new_traceparent()
        if cloudevents.is_cloudevent_content_type(content_type):
            event = cloudevents.from_cloudevent(
                data, topic=topic, pubsubname=pubsubname, traceparent=trace, tracestate=tracestate
            )
        else:
            event = cloudevents.new_envelope(
                data=data,
                content_type=content_type,
                topic=topic,
                pubsubname=pubsubname,
                source=self._app_id,
                traceparent=trace,
                tracestate=tracestate,
                metadata=metadata,
            )
        cloudevents.apply_ttl(event, metadata)
        return marshal(event)

    async def publish(
        self,
        pubsubname: str,
        topic: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        *,
        traceparent: str = "",
        tracestate: str = "",
    ) -> None:
        """Wrap ``data`` as daprd does and hand it to the broker; raises DaprError."""
        _, raw = self._validated(pubsubname, topic, metadata)
        try:
            body = self.envelope(
                pubsubname,
                topic,
                data,
                content_type,
                metadata,
                raw=raw,
                traceparent=traceparent,
                tracestate=tracestate,
            )
        except cloudevents.CloudEventError as exc:
            raise cloudevent_failed(pubsubname, self._app_id, exc) from None
        started = time.perf_counter()
        if not self.may_publish(pubsubname, topic):
            self._egress(pubsubname, topic, False, started)
            raise publish_forbidden(pubsubname, topic, self._app_id)
        try:
            await self.send(pubsubname, topic, body, metadata)
        except PublishError as exc:
            self._egress(pubsubname, topic, False, started)
            raise publish_failed(pubsubname, topic, exc) from None
        self._egress(pubsubname, topic, True, started)

    def _egress(self, pubsubname: str, topic: str, success: bool, started: float) -> None:
        """An API publish, recorded as daprd's PubsubEgressEvent."""
        if self._metrics is not None:
            elapsed = ms_since(started)
            self._metrics.pubsub_egress(pubsubname, topic, success, elapsed)

    async def publish_raw(
        self, pubsubname: str, topic: str, data: bytes, metadata: Mapping[str, str]
    ) -> None:
        """Publish bytes as they are (dead letters keep the original event); raises DaprError."""
        self._component(pubsubname, topic, metadata)
        self._check_scope(pubsubname, topic)
        try:
            await self.send(pubsubname, topic, data, metadata)
        except PublishError as exc:
            raise publish_failed(pubsubname, topic, exc) from None

    async def bulk_publish(
        self,
        pubsubname: str,
        topic: str,
        entries: Sequence[PublishEntry],
        metadata: Mapping[str, str],
        *,
        traceparent: str = "",
        tracestate: str = "",
    ) -> list[FailedEntry]:
        """Publish every entry; returns the ones the broker refused. Raises DaprError.

        As daprd's bulk publish: the request's rawPayload decides for every entry, and an entry
        gets the request's metadata (under its own) only when it has metadata of its own.
        """
        _, raw = self._validated(pubsubname, topic, metadata)
        ids = [entry.entry_id for entry in entries]
        if any(not entry_id for entry_id in ids) or len(set(ids)) != len(ids):
            raise bad_entries(pubsubname, topic, self._app_id)
        prepared: list[BulkEntry] = []
        for entry in entries:
            merged = {} if entry.metadata is None else {**metadata, **entry.metadata}
            try:
                body = self.envelope(
                    pubsubname,
                    topic,
                    entry.data,
                    entry.content_type,
                    merged,
                    raw=raw,
                    traceparent=traceparent,
                    tracestate=tracestate,
                )
            except cloudevents.CloudEventError as exc:
                raise cloudevent_failed(pubsubname, self._app_id, exc) from None
            prepared.append(BulkEntry(entry.entry_id, body, merged))
        self._check_scope(pubsubname, topic)
        return await self.send_bulk(pubsubname, topic, prepared)

    async def send_bulk(
        self, pubsubname: str, topic: str, entries: Sequence[BulkEntry]
    ) -> list[FailedEntry]:
        """Hand the entries, as they are, to a loaded pubsub's broker; the ones it refused.
        Under the pubsub's outbound policy, as daprd's ApplyBulkPublishResiliency: an attempt
        that leaves entries failed is retried with those entries only, and what is still
        failed when the policy gives up (times out, breaker open, retries spent) is what the
        caller is told."""
        component = self._pubsubs[pubsubname]
        reason = f"error when publishing to topic {topic} in pubsub {pubsubname}"
        pending = list(entries)

        async def attempt() -> None:
            nonlocal pending
            try:
                failed = set(await component.bulk_publish(topic, pending))
            except OSError as exc:
                raise PublishError(str(exc)) from None
            if failed:
                pending = [entry for entry in pending if entry.entry_id in failed]
                raise PublishError(reason)

        policy = self._policies.get(pubsubname)
        try:
            if policy is None:
                await attempt()
            else:
                await run(*policy, attempt, PublishError, (), f"component[{pubsubname}] output")
        except (TimeoutError, PublishError) as exc:
            if str(exc) != reason:
                logger.error("bulk publish to %s/%s failed: %s", pubsubname, topic, exc)
            return [FailedEntry(entry.entry_id, str(exc)) for entry in pending]
        return []
