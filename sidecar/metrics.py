"""daprd's component metrics for state and pub/sub, exported as daprd 1.18 exports them.

daprd records OpenCensus views and serves them through the OpenCensus Prometheus exporter under
the namespace ``dapr``: a Count view becomes a counter named after the view (no ``_total``), a
distribution a histogram of milliseconds with daprd's default latency buckets. prometheus_client
always adds ``_total`` to a counter's name, so the text format (version 0.0.4, the only one
daprd's handler offers) is written here. Recording is pure bookkeeping; the server is elsewhere.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

#: pkg/config: daprd's default latency distribution, in milliseconds.
LATENCY_BUCKETS_MS = (
    *(1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250),
    *(300, 400, 500, 650, 800, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000),
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: State operations, as daprd names them (pkg/diagnostics/component_monitoring.go).
GET, SET, DELETE, BULK_GET, BULK_DELETE, TRANSACTION, QUERY = (
    "get",
    "set",
    "delete",
    "bulk_get",
    "bulk_delete",
    "transaction",
    "query",
)

Labels = tuple[tuple[str, str], ...]


def ms_since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), as daprd's
    ElapsedSince gives them to its views."""
    return (time.perf_counter() - started) * 1000


#: The views served, with daprd's descriptions as their help.
_HELP = {
    "pubsub_egress_count": "The number of outgoing messages published to the pub/sub component.",
    "pubsub_egress_latencies": "The latency of the response from the pub/sub component.",
    "pubsub_ingress_count": "The number of incoming messages arriving from the pub/sub component.",
    "pubsub_ingress_latencies": "The consuming app event processing latency.",
    "state_count": "The number of operations performed on the state component.",
    "state_latencies": "The latency of the response from the state component.",
}


@dataclass(slots=True)
class _Distribution:
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))
    count: int = 0
    total: float = 0.0

    def add(self, value: float) -> None:
        # OpenCensus buckets are [lower, upper): a value on a bound counts in the next one.
        index = bisect.bisect_right(LATENCY_BUCKETS_MS, value)
        if index < len(self.buckets):
            self.buckets[index] += 1
        self.count += 1
        self.total += value


@dataclass(slots=True)
class _View:
    """One metric: a count, or a latency distribution, per label set."""

    name: str
    help: str
    histogram: bool
    counts: dict[Labels, int] = field(default_factory=dict)
    distributions: dict[Labels, _Distribution] = field(default_factory=dict)

    def record(self, labels: Labels, value: float) -> None:
        if not self.histogram:
            self.counts[labels] = self.counts.get(labels, 0) + 1
            return
        distribution = self.distributions.get(labels)
        if distribution is None:
            distribution = self.distributions[labels] = _Distribution()
        distribution.add(value)

    def lines(self) -> Iterator[str]:
        if not (self.counts or self.distributions):
            return
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {'histogram' if self.histogram else 'counter'}"
        for labels, count in sorted(self.counts.items()):
            yield f"{self.name}{_labels(labels)} {count}"
        for labels, dist in sorted(self.distributions.items()):
            cumulative = 0
            for bound, hits in zip(LATENCY_BUCKETS_MS, dist.buckets, strict=True):
                cumulative += hits
                yield f"{self.name}_bucket{_labels((*labels, ('le', str(bound))))} {cumulative}"
            yield f"{self.name}_bucket{_labels((*labels, ('le', '+Inf')))} {dist.count}"
            yield f"{self.name}_sum{_labels(labels)} {_number(dist.total)}"
            yield f"{self.name}_count{_labels(labels)} {dist.count}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Labels) -> str:
    # An empty value is written too (`namespace=""` outside Kubernetes), as client_golang does.
    parts = [f'{name}="{_escape_value(value)}"' for name, value in labels]
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class ComponentMetrics:
    """The state and pub/sub views of one sidecar (daprd's ``app_id`` and ``namespace`` tags)."""

    def __init__(self, app_id: str, namespace: str) -> None:
        self._common = (("app_id", app_id),)
        self._namespace = namespace
        self._views = {
            name: _View(f"dapr_component_{name}", text, histogram=name.endswith("latencies"))
            for name, text in _HELP.items()
        }

    def _record(self, name: str, labels: Labels, elapsed_ms: float) -> None:
        self._views[f"{name}_count"].record(labels, 1)
        if elapsed_ms > 0:  # as daprd: no latency sample for an instant outcome
            self._views[f"{name}_latencies"].record(labels, elapsed_ms)

    def state_invoked(
        self, component: str, operation: str, success: bool, elapsed_ms: float
    ) -> None:
        """A call into a state store that the API made (daprd's StateInvoked)."""
        labels = (
            *self._common,
            ("component", component),
            ("namespace", self._namespace),
            ("operation", operation),
            ("success", "true" if success else "false"),
        )
        self._record("state", labels, elapsed_ms)

    def pubsub_egress(self, component: str, topic: str, success: bool, elapsed_ms: float) -> None:
        """A publish through the API (daprd's PubsubEgressEvent)."""
        labels = (
            *self._common,
            ("component", component),
            ("namespace", self._namespace),
            ("success", "true" if success else "false"),
            ("topic", topic),
        )
        self._record("pubsub_egress", labels, elapsed_ms)

    def pubsub_ingress(
        self, component: str, process_status: str, status: str, topic: str, elapsed_ms: float
    ) -> None:
        """One delivery to the app and what came of it (daprd's PubsubIngressEvent): the
        ``process_status`` success, retry or drop, and ``status`` (empty: the same)."""
        labels = (
            *self._common,
            ("component", component),
            ("namespace", self._namespace),
            ("process_status", process_status),
            ("status", status or process_status),
            ("topic", topic),
        )
        self._record("pubsub_ingress", labels, elapsed_ms)

    def render(self) -> bytes:
        """Every view with at least one record, in the Prometheus text format."""
        lines = [line for name in sorted(self._views) for line in self._views[name].lines()]
        return ("\n".join(lines) + "\n").encode() if lines else b""


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def metrics_app(metrics: ComponentMetrics) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app of the metrics port: every path answers the metrics, as daprd's handler on
    ``/`` of a Go ServeMux does."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = metrics.render()
        headers = [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    return app
