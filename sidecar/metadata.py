"""The metadata API's content (``GET /v1.0/metadata``, gRPC GetMetadata), shared by both transports.

The gRPC answer is the proto; the HTTP answer is daprd's JSON rendering of the same proto
(field names from dapr/dapr pkg/api/http/metadata.go, empty fields omitted like Go's omitempty).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dapr.proto.runtime.v1 import metadata_pb2

from sidecar.app_health import HealthCheck
from sidecar.components import Component, Subscription
from sidecar.durations import format_go_duration

RUNTIME_VERSION = "1.18.0-local"  #: daprd's API level this sidecar follows, marked as ours


@dataclass(frozen=True, slots=True)
class AppConnection:
    port: int | None
    protocol: str
    channel_address: str
    health: HealthCheck | None = None  #: only with --enable-app-health-check, as daprd
    max_concurrency: int = 0  #: --app-max-concurrency; 0 = no limit (left out of the JSON)


#: A subscription's type by where it came from (a declarative one's source is its file).
_KINDS = {"programmatic": metadata_pb2.PROGRAMMATIC, "streaming": metadata_pb2.STREAMING}


def build_metadata(
    app_id: str,
    components: Iterable[tuple[Component, Iterable[str]]],
    subscriptions: Iterable[Subscription],
    extended: Mapping[str, str],
    app: AppConnection,
) -> metadata_pb2.GetMetadataResponse:
    """The GetMetadata answer; ``components`` pairs each loaded component with its features."""
    response = metadata_pb2.GetMetadataResponse(
        id=app_id,
        runtime_version=RUNTIME_VERSION,
        extended_metadata={**extended, "daprRuntimeVersion": RUNTIME_VERSION},
        app_connection_properties=metadata_pb2.AppConnectionProperties(
            port=app.port or 0,
            protocol=app.protocol,
            channel_address=app.channel_address,
            max_concurrency=app.max_concurrency,
            health=metadata_pb2.AppConnectionHealthProperties(
                health_check_path=app.health.path,
                health_probe_interval=format_go_duration(app.health.interval),
                health_probe_timeout=format_go_duration(app.health.timeout),
                health_threshold=app.health.threshold,
            )
            if app.health is not None
            else None,
        ),
        actor_runtime=metadata_pb2.ActorRuntime(
            runtime_status=metadata_pb2.ActorRuntime.DISABLED, host_ready=False
        ),
    )
    for component, features in components:
        response.registered_components.add(
            name=component.name,
            type=component.type,
            version=component.version,
            capabilities=list(features),
        )
    for sub in subscriptions:
        kind = _KINDS.get(sub.source, metadata_pb2.DECLARATIVE)
        item = response.subscriptions.add(
            pubsub_name=sub.pubsubname,
            topic=sub.topic,
            metadata=dict(sub.metadata),
            dead_letter_topic=sub.dead_letter_topic,
            type=kind,
        )
        for rule in sub.rules:
            item.rules.rules.add(match=rule.match, path=rule.path)
        if sub.default_path:
            item.rules.rules.add(match="", path=sub.default_path)
    return response


def metadata_json(response: metadata_pb2.GetMetadataResponse) -> dict[str, Any]:
    """daprd's HTTP rendering of the GetMetadata answer: its metadataResponse struct, whose
    fields keep this order (the maps in it are sorted, as json.Marshal writes Go maps)."""
    body: dict[str, Any] = {"id": response.id, "runtimeVersion": response.runtime_version}
    if response.enabled_features:
        body["enabledFeatures"] = list(response.enabled_features)
    if response.registered_components:
        body["components"] = [
            _omit_empty(
                {
                    "name": c.name,
                    "type": c.type,
                    "version": c.version,
                    "capabilities": list(c.capabilities),
                }
            )
            for c in response.registered_components
        ]
    if response.extended_metadata:
        body["extended"] = dict(sorted(response.extended_metadata.items()))  # a Go map
    if response.subscriptions:
        body["subscriptions"] = [_subscription_json(s) for s in response.subscriptions]
    connection = response.app_connection_properties
    body["appConnectionProperties"] = _omit_empty(
        {
            "port": connection.port,
            "protocol": connection.protocol,
            "channelAddress": connection.channel_address,
            "maxConcurrency": connection.max_concurrency,
        }
    )
    if connection.HasField("health"):
        health = connection.health
        body["appConnectionProperties"]["health"] = _omit_empty(
            {
                "healthCheckPath": health.health_check_path,
                "healthProbeInterval": health.health_probe_interval,
                "healthProbeTimeout": health.health_probe_timeout,
                "healthThreshold": health.health_threshold,
            }
        )
    body["actorRuntime"] = {
        "runtimeStatus": metadata_pb2.ActorRuntime.ActorRuntimeStatus.Name(
            response.actor_runtime.runtime_status
        ),
        "hostReady": response.actor_runtime.host_ready,
    }
    return body


def _subscription_json(sub: metadata_pb2.PubsubSubscription) -> dict[str, Any]:
    item: dict[str, Any] = {"pubsubname": sub.pubsub_name, "topic": sub.topic}
    if sub.metadata:
        item["metadata"] = dict(sorted(sub.metadata.items()))
    if sub.rules.rules:
        item["rules"] = [_omit_empty({"match": r.match, "path": r.path}) for r in sub.rules.rules]
    item["deadLetterTopic"] = sub.dead_letter_topic
    item["type"] = metadata_pb2.PubsubSubscriptionType.Name(sub.type)
    return item


def _omit_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in ("", 0, None, [], {})}
