"""GET /jobs on a store without the query API (Redis: the index) still lists a job whose
creating replica was killed with kill -9 before it saved the job's index entry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, replicas, sidecar_state
from tests.procs import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[Replica]]:
    """An API-only replica that never gets to save its index, and a replica that runs jobs."""
    with replicas(
        redis_server.host,
        tmp_path,
        ("creator", {"APP_ENV": "api", "JOB_LISTING_FLUSH_SECONDS": "3600"}),
        ("runner", {"JOB_LISTING_FLUSH_SECONDS": "0.2"}),
    ) as started:
        yield started


def _listed(url: str, owner: str) -> list[str]:
    page = httpx.get(f"{url}/jobs", params={"owner": owner, "limit": 10}, timeout=10)
    assert page.status_code == 200, page.text
    return [job["id"] for job in page.json()["items"]]


@pytest.mark.timeout(120)
def test_a_job_from_a_replica_killed_before_its_index_flush_is_still_listed(
    pair: list[Replica],
) -> None:
    creator, runner = pair
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    made = httpx.post(
        f"{creator.url}/jobs", json={"input": {"seconds": 0.1}, "owner": owner}, timeout=10
    )
    assert made.status_code == 202, made.text
    job_id = made.json()["id"]
    wait_until(
        lambda: (
            httpx.get(f"{runner.url}/jobs/{job_id}", timeout=10).json()["status"] == "Completed"
        ),
        timeout=20,
    )
    assert creator.app is not None
    creator.app.kill9()  # its index entry dies with it, unsaved
    record = sidecar_state(runner.http_port, f"job-{job_id}")
    instance = record["indexedAs"].rpartition(":")[0]
    assert sidecar_state(runner.http_port, f"jobindex-mark-{instance}") is None

    # The runner, having claimed the job, finds the creator's mark never passed it and indexes
    # the job itself (after about 10 s), exactly once.
    wait_until(lambda: job_id in _listed(runner.url, owner), timeout=40, interval=0.5)
    assert _listed(runner.url, owner) == [job_id]


@pytest.mark.timeout(150)
def test_a_job_canceled_while_new_is_listed_though_its_creator_was_killed(
    pair: list[Replica],
) -> None:
    """Never claimed, the job is still delivered: the replica the queue brings it to finds it
    canceled and indexes it for its dead creator."""
    creator, runner = pair
    runner.stop()  # no replica takes the job off the queue until it is canceled
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    made = httpx.post(
        f"{creator.url}/jobs", json={"input": {"seconds": 0.1}, "owner": owner}, timeout=10
    )
    assert made.status_code == 202, made.text
    job_id = made.json()["id"]
    canceled = httpx.post(f"{creator.url}/jobs/{job_id}/cancel", timeout=10)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "Canceled"
    assert creator.app is not None
    creator.app.kill9()

    runner.start_again()
    wait_until(lambda: job_id in _listed(runner.url, owner), timeout=60, interval=0.5)
    assert _listed(runner.url, owner) == [job_id]
    job = httpx.get(f"{runner.url}/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "Canceled"
