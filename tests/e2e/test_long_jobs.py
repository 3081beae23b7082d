"""A job that runs past many leases does not crowd other jobs out of its replica.

The broker hands a queue message pending past ``processingTimeout`` out again every
``processingTimeout``, and a long job's message stays pending while it runs. Each such
redelivery takes one of the sidecar's ``concurrency`` slots for as long as the orchestrator
holds it; if it held it until the job ended, one long job would take one more slot every
lease until its replica ran nothing else. It answers RETRY instead, so the redeliveries of a
long job keep at most two slots (the resiliency policy retries each for a little more than a
lease) on top of the one its own delivery holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, log_dir_for, write_components

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 3
#: Sidecar slots for the queue: the long job's delivery and its redeliveries' retries keep up
#: to three of them; the fourth is left for the short jobs.
CONCURRENCY = 4
LONG_JOB_SECONDS = 18.0
SHORT_JOBS = 7
#: How long each short job may take to be answered: it runs at once when a slot is free.
SHORT_WAIT_SECONDS = 6


@pytest.fixture
def solo(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Replica, str]]:
    topic = f"job-events-{uuid.uuid4().hex[:8]}"
    resources = write_components(
        tmp_path / "resources",
        redis_server.host,
        topic,
        lease=f"{LEASE_SECONDS}s",
        redeliver="1s",
        concurrency=CONCURRENCY,
    )
    logs = log_dir_for(tmp_path)
    replica = Replica("solo")
    try:
        replica.start_sidecar(resources, logs)
        replica.start_app(topic, logs, JOB_LEASE_SECONDS=str(LEASE_SECONDS))
        yield replica, topic
    finally:
        replica.stop()


def test_short_jobs_keep_running_beside_a_long_one(
    solo: tuple[Replica, str], redis_server: RedisServer
) -> None:
    replica, topic = solo
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        body = {"type": "wait", "input": {"seconds": LONG_JOB_SECONDS}}
        long_job = client.post("/jobs", json=body).json()
        started = time.monotonic()
        answers = []
        for _ in range(SHORT_JOBS):
            time.sleep(2.0)
            answer = client.post(
                "/jobs",
                json={"type": "wait", "input": {"seconds": 0}},
                headers={"Prefer": f"wait={SHORT_WAIT_SECONDS}"},
            )
            answers.append((round(time.monotonic() - started, 1), answer.status_code))
        # The long job's message was handed out again several times while they ran.
        assert time.monotonic() - started > 4 * LEASE_SECONDS
        assert [code for _, code in answers] == [200] * SHORT_JOBS, answers
        final = client.get(f"/jobs/{long_job['id']}", params={"wait": 30}).json()
    # Never taken over: the redeliveries left it to the replica running it.
    assert (final["status"], final["attempt"]) == ("Completed", 1)
    conn = redis.Redis(port=redis_server.port)
    try:
        # Every delivery of the long job ended once it was final: nothing is left pending.
        deadline = time.monotonic() + 3 * LEASE_SECONDS
        while conn.xpending(topic, "job-orchestrator")["pending"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert conn.xpending(topic, "job-orchestrator")["pending"] == 0
    finally:
        conn.close()
