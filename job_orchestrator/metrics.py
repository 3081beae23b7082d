"""Prometheus metrics of one replica: jobs accepted, run and made final here, waits, sidecar calls.

Served at ``GET /metrics`` in Prometheus' text format. Counters count what this replica did, so a
dashboard sums them over replicas (``sum by (type, status) (rate(...))``). Gauges are read from
the live objects when scraped, so nothing is kept up to date on the hot path but a few counters.
A job type is a label: its values are the registered handlers (unknown types are refused), so
the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from job_orchestrator.jobs import Job

#: Seconds from createdAt to the first claim: short jobs wait milliseconds, a backlog minutes.
QUEUE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
#: Seconds from startedAt to the final status: jobs run from milliseconds to hours.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400)


@dataclass(frozen=True, slots=True)
class LiveCounts:
    """Where the scrape-time figures come from (the replica's worker, waiter slots, store)."""

    running: Callable[[], int]  #: handlers running here now
    waiting: Callable[[], int]  #: requests waiting here now (waits, long polls, event streams)
    waiting_capacity: int  #: the most requests this replica lets wait at once
    sidecar_calls: Callable[[], int]  #: calls to the sidecar so far
    sidecar_failures: Callable[[], int]  #: of those, the ones that failed (sidecar or store down)
    unheard: Callable[[], int]  #: jobs created (or taken over) here, not heard taken up yet
    reannounced: Callable[[], int]  #: jobs still New long after creation, announced again
    adopted: Callable[[], int]  #: unheard-of jobs taken over from replicas gone
    held_back: Callable[[], int]  #: job changes not sent while the store failed (breaker.py)
    finals_suspect: Callable[[], int]  #: finals a store failure may have cost their event
    finals_reannounced: Callable[[], int]  #: of those, the ones published again


class _LiveCollector(Collector):
    def __init__(self, live: LiveCounts) -> None:
        self._live = live

    def collect(self) -> Iterable[Metric]:
        live = self._live
        yield GaugeMetricFamily(
            "job_orchestrator_jobs_running", "Job handlers running on this replica", live.running()
        )
        yield GaugeMetricFamily(
            "job_orchestrator_waiting_requests",
            "Requests waiting on a job here (timeoutSeconds, Prefer: wait, ?wait, event streams)",
            live.waiting(),
        )
        yield GaugeMetricFamily(
            "job_orchestrator_waiting_requests_limit",
            "The most requests this replica lets wait at once (MAX_WAITERS); more get 503",
            live.waiting_capacity,
        )
        yield CounterMetricFamily(
            "job_orchestrator_sidecar_calls",
            "Calls this replica made to its Dapr sidecar (state reads and transactions)",
            live.sidecar_calls(),
        )
        yield CounterMetricFamily(
            "job_orchestrator_sidecar_call_failures",
            "Sidecar calls that failed: sidecar or state store unavailable, or no answer in time",
            live.sidecar_failures(),
        )
        yield GaugeMetricFamily(
            "job_orchestrator_jobs_unheard",
            "Jobs created here (or taken over from a replica gone) whose queue delivery or later "
            "change this replica has not heard of yet (it looks at each "
            "JOB_REQUEUE_AFTER_SECONDS after creation)",
            live.unheard(),
        )
        yield CounterMetricFamily(
            "job_orchestrator_jobs_reannounced",
            "Jobs created here that were still New JOB_REQUEUE_AFTER_SECONDS later with nothing "
            "heard of them, and had their job.created published again",
            live.reannounced(),
        )
        yield CounterMetricFamily(
            "job_orchestrator_jobs_adopted",
            "Jobs another replica created and had not yet heard taken up when it stopped or "
            "died, taken over by this one to be announced again should they still be New",
            live.adopted(),
        )
        yield CounterMetricFamily(
            "job_orchestrator_changes_held_back",
            "Job changes failed without being sent, as the state store had failed every call "
            "for over a second (one is sent every 0.5 s to see whether it is back): each would "
            "have left an outbox message for the relay to look up in vain",
            live.held_back(),
        )
        yield GaugeMetricFamily(
            "job_orchestrator_finals_suspect",
            "Jobs made final here shortly before the state store failed, whose final event the "
            "outbox relay may have given up, waiting to be announced again",
            live.finals_suspect(),
        )
        yield CounterMetricFamily(
            "job_orchestrator_finals_reannounced",
            "Final events published again because the state store failed within "
            "JOB_FINALS_AT_RISK_SECONDS of their first publication",
            live.finals_reannounced(),
        )


class JobMetrics:
    """The replica's collectors, in a registry of its own (several apps may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._submitted = Counter(
            "job_orchestrator_jobs_submitted",
            "Jobs created by this replica (an Idempotency-Key replay creates none)",
            ["type"],
            registry=registry,
        )
        self._runs = Counter(
            "job_orchestrator_job_runs",
            "Jobs claimed by this replica to run (a takeover after a lost lease is another run; "
            "a retry of a failed handler, within the same run, is not)",
            ["type"],
            registry=registry,
        )
        self._takeovers = Counter(
            "job_orchestrator_job_takeovers",
            "Runs that took a job over from a replica whose lease ran out",
            ["type"],
            registry=registry,
        )
        self._retries = Counter(
            "job_orchestrator_job_retries",
            "Handler failures here that will be retried (maxAttempts not reached)",
            ["type"],
            registry=registry,
        )
        self._finished = Counter(
            "job_orchestrator_jobs_finished",
            "Jobs this replica brought to a final status",
            ["type", "status"],
            registry=registry,
        )
        self._queued = Histogram(
            "job_orchestrator_job_queue_seconds",
            "From createdAt to the job's first claim, for jobs first claimed here",
            ["type"],
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self._duration = Histogram(
            "job_orchestrator_job_duration_seconds",
            "From startedAt to the final status, for jobs that ran and were made final here",
            ["type", "status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._live: _LiveCollector | None = None

    def watch(self, live: LiveCounts) -> None:
        """Report ``live``'s figures from now on (once the lifespan has built the objects)."""
        self.unwatch()
        self._live = _LiveCollector(live)
        self.registry.register(self._live)

    def unwatch(self) -> None:
        if self._live is not None:
            self.registry.unregister(self._live)
            self._live = None

    def submitted(self, job: Job) -> None:
        self._submitted.labels(job.type).inc()

    def claimed(self, before: Job, claimed: Job) -> None:
        """``before`` as read, ``claimed`` as written by this replica's claim."""
        self._runs.labels(claimed.type).inc()
        if claimed.takeovers > before.takeovers:
            self._takeovers.labels(claimed.type).inc()
        if before.started_at is None and claimed.started_at is not None:
            queued = max(0.0, claimed.started_at - before.created_at)
            self._queued.labels(claimed.type).observe(queued)

    def retried(self, job: Job) -> None:
        self._retries.labels(job.type).inc()

    def finished(self, job: Job) -> None:
        """``job`` as written with its final status by this replica."""
        status = job.status.value
        self._finished.labels(job.type, status).inc()
        if job.started_at is not None and job.completed_at is not None:
            duration = max(0.0, job.completed_at - job.started_at)
            self._duration.labels(job.type, status).observe(duration)
