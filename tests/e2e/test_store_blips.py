"""Redis away for a moment, shorter than a lease, while a job runs: the replica keeps the job.

Its lease renewals, progress and final writes are tried again while the lease holds, so the
handler runs on and the job ends in its first attempt. Before, a blip stopped every handler
running on the replica, and the job ran again from the start once its lease ran out (four such
blips failed it as "its worker was lost 4 times"). Outages longer than a lease are in
test_faults_redis.py: the job is then taken over.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.localredis import start_redis
from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, log_dir_for, write_components
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

LEASE = 6  #: seconds; renewed every 2 s
BLIP_SECONDS = 2.5


@pytest.fixture
def replica(own_redis: RedisServer, tmp_path: Path) -> Iterator[Replica]:
    topic = f"job-events-{uuid.uuid4().hex[:8]}"
    resources = write_components(
        tmp_path / "resources", own_redis.host, topic, lease=f"{LEASE}s", redeliver="1s"
    )
    logs = log_dir_for(tmp_path)
    one = Replica("blips")
    try:
        one.start_sidecar(resources, logs)
        one.start_app(topic, logs, JOB_LEASE_SECONDS=str(LEASE))
        yield one
    finally:
        one.stop()


def _blip(redis: RedisServer) -> None:
    redis.stop()  # a clean stop: the append-only file keeps every write
    time.sleep(BLIP_SECONDS)
    redis.proc = start_redis(redis.port, redis.data_dir)


def _run_with_blip(replica: Replica, redis: RedisServer, seconds: float, blip_at: float) -> Any:
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        job_id = client.post("/jobs", json={"input": {"seconds": seconds}}).json()["id"]
        wait_until(
            lambda: client.get(f"/jobs/{job_id}").json()["status"] == "InProgress", timeout=10
        )
        time.sleep(blip_at)
        _blip(redis)
        deadline = time.monotonic() + 4 * LEASE + seconds
        job: Any = None
        while time.monotonic() < deadline:
            resp = client.get(f"/jobs/{job_id}", params={"wait": 5})
            if resp.status_code == 200 and resp.json()["status"] != "InProgress":
                job = resp.json()
                break
            time.sleep(0.2)
        assert job is not None, f"job {job_id} did not end within {4 * LEASE + seconds} s"
        return job


def test_a_blip_while_the_handler_runs_leaves_it_running(
    replica: Replica, own_redis: RedisServer
) -> None:
    """Redis goes away 2 s into an 8 s job, so a lease renewal and progress fail."""
    job = _run_with_blip(replica, own_redis, seconds=8, blip_at=2.0)
    assert (job["status"], job["attempt"]) == ("Completed", 1), job
    assert job["worker"] == replica.app.env["REPLICA_NAME"]  # type: ignore[union-attr]


def test_a_blip_when_the_handler_returns_keeps_its_result(
    replica: Replica, own_redis: RedisServer
) -> None:
    """Redis goes away just before a 3 s job ends, so its final write fails at first."""
    job = _run_with_blip(replica, own_redis, seconds=3, blip_at=2.2)
    assert (job["status"], job["attempt"]) == ("Completed", 1), job
    assert job["result"] == {"waitedSeconds": 3}, job
