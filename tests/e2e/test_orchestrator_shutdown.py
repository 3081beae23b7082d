"""A replica told to stop (SIGTERM, as Kubernetes and Ctrl-C do) answers its waiting requests
at once and lets its running jobs finish within the grace time."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import (
    Replica,
    log_dir_for,
    one_replica,
    sidecar_state,
    write_components,
)
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

JOB_SECONDS = 4.0  #: shorter than the orchestrator's 10 s grace, far longer than the answers


@pytest.fixture
def replica(redis_server: RedisServer, tmp_path: Path) -> Iterator[Replica]:
    with one_replica(redis_server.host, tmp_path, "stopping") as one:
        yield one


def _events(url: str) -> list[str]:
    """The event types of a Server-Sent Events stream, read until the server ends it."""
    types = []
    with httpx.stream("GET", url, timeout=30) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("event: "):
                types.append(line.removeprefix("event: "))
    return types


def test_sigterm_answers_waiting_requests_and_lets_running_jobs_finish(replica: Replica) -> None:
    assert replica.app is not None
    body = {"input": {"seconds": JOB_SECONDS}, "timeoutSeconds": 30}
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        started = client.post("/jobs", json=body)
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        wait_until(
            lambda: client.get(f"/jobs/{job_id}").json()["status"] == "InProgress", timeout=10
        )
        with ThreadPoolExecutor(3) as pool:
            waiting = pool.submit(client.post, "/Jobs/StartJobWithTimeout", json=body)
            polling = pool.submit(client.get, f"/jobs/{job_id}", params={"wait": 30})
            streaming = pool.submit(_events, f"{replica.url}/jobs/{job_id}/events")
            time.sleep(0.5)  # let the three requests reach their waits
            os.killpg(replica.app.pid, signal.SIGTERM)
            answered: Any = waiting.result(timeout=30)
            polled: Any = polling.result(timeout=30)
            streamed = streaming.result(timeout=30)

    # Answered with what was known, well before the jobs end: 202 and where to poll.
    assert answered.status_code == 202, answered.text
    assert answered.headers["Location"] == f"/jobs/{answered.json()['id']}"
    assert answered.headers["Retry-After"]
    assert answered.json()["status"] in ("New", "InProgress")
    assert polled.status_code == 200
    assert polled.json()["status"] == "InProgress"
    assert polled.headers["Retry-After"]
    assert streamed and "job.completed" not in streamed  # ended, not run to the end

    # The running jobs still finish within the grace time, then the process exits.
    replica.app.proc.wait(timeout=30)  # type: ignore[union-attr]
    for finished in (job_id, answered.json()["id"]):
        record = sidecar_state(replica.http_port, f"job-{finished}")
        assert record["status"] == "Completed", record


def test_a_job_still_running_after_the_grace_is_handed_back_and_taken_over_at_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The hand-back's event brings the job to the other replica's worker. The broker would
    hand the job's own delivery out again only after ``processingTimeout``, set here far
    beyond the test's waits, so a takeover within them came through the event. The stopping
    replica's sidecar keeps reading the queue meanwhile, as daprd's does while it drains: the
    event is published twice so that one copy reaches the other replica."""
    topic = f"job-events-{uuid.uuid4().hex[:8]}"
    resources = write_components(
        tmp_path / "resources", redis_server.host, topic, lease="300s", redeliver="1s"
    )
    logs = log_dir_for(tmp_path)
    fast = {"JOB_LEASE_SECONDS": "3", "JOB_SHUTDOWN_GRACE_SECONDS": "1"}
    stopping, taking_over = Replica("stopping"), Replica("taking-over")
    try:
        stopping.start_sidecar(resources, logs)
        app = stopping.start_app(topic, logs, **fast)
        with httpx.Client(base_url=stopping.url, timeout=30) as client:
            job_id = client.post("/jobs", json={"input": {"seconds": 6}}).json()["id"]
            wait_until(
                lambda: client.get(f"/jobs/{job_id}").json()["status"] == "InProgress",
                timeout=10,
            )
        taking_over.start_sidecar(resources, logs)
        successor = taking_over.start_app(topic, logs, **fast)

        signalled = time.time()
        os.killpg(app.pid, signal.SIGTERM)
        app.proc.wait(timeout=30)  # type: ignore[union-attr]
        with httpx.Client(base_url=taking_over.url, timeout=30) as client:
            done = client.get(f"/jobs/{job_id}", params={"wait": 20}).json()
        # Said in full if it fails. It failed in full runs while the store's calls lost a
        # cancellation that came as they answered (tests/test_no_wait_for.py).
        assert done["status"] == "Completed", f"SIGTERM at {signalled:.3f}: {json.dumps(done)}"
        assert (done["worker"], done["attempt"]) == (successor.env["REPLICA_NAME"], 2)
        assert done["handedBack"] is False
        final = sidecar_state(taking_over.http_port, f"job-{job_id}")
        assert final["takeovers"] == 0  # a hand-back is no lost worker
    finally:
        stopping.stop()
        taking_over.stop()
