"""Prometheus metrics of microservice-x: what became of the job events delivered to it.

Served at ``GET /metrics``. Each event delivered (alone or in a bulk batch, or back through the
dead-letter topic) is counted once with the answer it got, so a dashboard shows whether events
are applied, seen twice, refused as malformed, or left to Dapr to retry because the store failed.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from microservice_x.events import JobEvent
from microservice_x.view import Outcome

#: The outcome label: a view's reduction outcome (applied, stale, duplicate) or one of these.
NOT_OURS = "not_ours"
MALFORMED = "malformed"
STORE_FAILED = "store_failed"

#: Seconds from the job change (its updatedAt) to the event's arrival here.
DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def seconds_between(start: str | None, end: str) -> float | None:
    """``end - start`` for RFC 3339 times; None when ``start`` is missing or unreadable."""
    if not start:
        return None
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):  # unreadable, or one of them has no time zone
        return None


class EventMetrics:
    """The service's collectors, in a registry of its own (several apps may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._events = Counter(
            "microservice_x_job_events",
            "Job events delivered here, by event type and what became of them: applied (the "
            "newest change), stale (older, kept in the history), duplicate, not_ours, malformed "
            "(answered DROP), store_failed (answered RETRY)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self._delay = Histogram(
            "microservice_x_job_event_delay_seconds",
            "From the job change (the job's updatedAt, milliseconds) to the event's arrival here, "
            "for events applied",
            ["type"],
            buckets=DELAY_BUCKETS,
            registry=self.registry,
        )
        self._dead_letters = Counter(
            "microservice_x_dead_letters_recorded",
            "Malformed events recorded from the dead-letter topic (GET /dead-letters)",
            registry=self.registry,
        )
        self._started = Counter(
            "microservice_x_jobs_started",
            "POST /jobs requests the orchestrator accepted (an Idempotency-Key replay counts "
            "again)",
            ["type"],
            registry=self.registry,
        )

    def event(self, event: JobEvent, outcome: str) -> None:
        self._events.labels(event.type, outcome).inc()

    def reduced(self, event: JobEvent, outcome: Outcome, received_at: str) -> None:
        """An event folded into its job's view on arrival at ``received_at``."""
        self.event(event, outcome.value)
        if outcome is Outcome.APPLIED:
            delay = seconds_between(event.job.updatedAt, received_at)
            if delay is not None:
                self._delay.labels(event.type).observe(max(0.0, delay))

    def malformed(self) -> None:
        self._events.labels("", MALFORMED).inc()

    def dead_letter_recorded(self) -> None:
        self._dead_letters.inc()

    def started(self, job_type: str) -> None:
        self._started.labels(job_type).inc()
