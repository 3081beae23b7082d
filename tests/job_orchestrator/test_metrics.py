"""GET /metrics: what one replica did with jobs, in Prometheus' format, through a real sidecar.

The app is shared by the package, so every figure is read as a difference around what a test does.
"""

from __future__ import annotations

import threading
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.job_orchestrator.inprocess import InProcess
from tests.job_orchestrator.test_api_control import seed_new_job
from tests.procs import wait_until

Labels = dict[str, str]


def scrape(inproc: InProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = inproc.client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_jobs_are_counted_by_type_and_final_status(inproc: InProcess) -> None:
    before = scrape(inproc)
    wait = {"Prefer": "wait=10"}
    done = inproc.client.post("/jobs", json={"input": {"seconds": 0}}, headers=wait).json()
    failed = inproc.client.post(
        "/jobs", json={"input": {"seconds": 0, "fail": True}}, headers=wait
    ).json()
    flaky = inproc.client.post(
        "/jobs",
        json={"type": "flaky", "input": {"succeedOn": 2}, "maxAttempts": 3},
        headers=wait,
    ).json()
    assert [done["status"], failed["status"], flaky["status"]] == [
        "Completed",
        "Failed",
        "Completed",
    ]
    canceled = seed_new_job(inproc)  # stored directly: no submission counted
    assert inproc.client.post(f"/jobs/{canceled}/cancel").json()["status"] == "Canceled"
    after = scrape(inproc)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("job_orchestrator_jobs_submitted_total", type="wait") == 2
    assert delta("job_orchestrator_jobs_submitted_total", type="flaky") == 1
    assert delta("job_orchestrator_job_runs_total", type="wait") == 2
    assert delta("job_orchestrator_job_runs_total", type="flaky") == 1
    assert delta("job_orchestrator_job_retries_total", type="flaky") == 1
    assert delta("job_orchestrator_job_retries_total", type="wait") == 0
    finished = "job_orchestrator_jobs_finished_total"
    assert delta(finished, type="wait", status="Completed") == 1
    assert delta(finished, type="wait", status="Failed") == 1
    assert delta(finished, type="wait", status="Canceled") == 1
    assert delta(finished, type="flaky", status="Completed") == 1
    # Only jobs that ran have a run time; the canceled New job has none.
    duration = "job_orchestrator_job_duration_seconds_count"
    assert delta(duration, type="wait", status="Completed") == 1
    assert delta(duration, type="wait", status="Failed") == 1
    assert delta(duration, type="wait", status="Canceled") == 0
    assert delta("job_orchestrator_job_queue_seconds_count", type="wait") == 2
    assert delta("job_orchestrator_job_queue_seconds_bucket", type="flaky", le="+Inf") == 1
    # Each job needs sidecar calls; none of these failed.
    assert delta("job_orchestrator_sidecar_calls_total") >= 4
    assert delta("job_orchestrator_sidecar_call_failures_total") == 0


def test_lost_races_are_not_counted_as_sidecar_failures(inproc: InProcess) -> None:
    """An idempotent replay loses its first-write on the key, which state.redis reports as a
    generic error, like an outage: an ordinary client retry must not look like one."""
    before = scrape(inproc)
    body = {"input": {"seconds": 0}}
    key = {"Idempotency-Key": f"metrics-{uuid.uuid4()}"}
    first = inproc.client.post("/jobs", json=body, headers=key)
    replays = [inproc.client.post("/jobs", json=body, headers=key) for _ in range(3)]
    other = inproc.client.post("/jobs", json={"input": {"seconds": 1}}, headers=key)
    assert first.status_code == 202
    assert [r.json()["id"] for r in replays] == [first.json()["id"]] * 3
    assert other.status_code == 422
    after = scrape(inproc)
    failures = "job_orchestrator_sidecar_call_failures_total"
    assert value(after, failures) - value(before, failures) == 0
    assert value(after, "job_orchestrator_sidecar_calls_total") > value(
        before, "job_orchestrator_sidecar_calls_total"
    )


def test_running_handlers_and_waiting_requests_are_gauges(inproc: InProcess) -> None:
    limit = value(scrape(inproc), "job_orchestrator_waiting_requests_limit")
    assert limit == inproc.settings.max_waiters
    job = inproc.client.post("/jobs", json={"type": "stubborn"}).json()
    wait_until(lambda: inproc.client.get(f"/jobs/{job['id']}").json()["status"] == "InProgress")
    running = value(scrape(inproc), "job_orchestrator_jobs_running")
    assert running >= 1
    waiting_before = value(scrape(inproc), "job_orchestrator_waiting_requests")
    answers: list[httpx.Response] = []
    poller = threading.Thread(
        target=lambda: answers.append(
            inproc.client.get(f"/jobs/{job['id']}", params={"wait": 20}, timeout=30)
        )
    )
    poller.start()
    try:
        wait_until(
            lambda: value(scrape(inproc), "job_orchestrator_waiting_requests") == waiting_before + 1
        )
    finally:
        assert inproc.client.post(f"/jobs/{job['id']}/cancel").status_code == 200
        poller.join(timeout=30)
    assert answers and answers[0].json()["status"] == "Canceled"
    after = scrape(inproc)
    assert value(after, "job_orchestrator_waiting_requests") == waiting_before
    assert value(after, "job_orchestrator_jobs_running") <= running - 1


def test_openmetrics_when_asked(inproc: InProcess) -> None:
    resp = inproc.client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.endswith("# EOF\n")
    assert "# TYPE job_orchestrator_jobs_finished counter" in resp.text
