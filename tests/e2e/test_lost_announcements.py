"""A job whose ``job.created`` event was lost after it was saved is announced again, so it runs.

The fault is made for real: the state store and the broker are two Redis servers, and the
broker is killed and comes back empty while the jobs wait in its queue (no worker replica runs
yet), as a broker restarted without its data or a failover that lost recent writes leaves it.
daprd's outbox relay loses events the same way when the state store is unreadable for ~10 s.
Before, such jobs stayed New forever.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, log_dir_for, write_components
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

JOBS = 3
REQUEUE_AFTER_SECONDS = 2
#: Bound on how long the lost jobs take to finish once a worker runs (a few sweeps, one run).
FINISHED_WITHIN = 45.0


class Cluster:
    """Its own state Redis and broker Redis; an API replica now, a worker replica later."""

    def __init__(self, state: RedisServer, broker: RedisServer, tmp: Path) -> None:
        self.broker = broker
        self.topic = f"job-events-{uuid.uuid4().hex[:8]}"
        on_state_redis = [
            {"name": "redisHost", "value": state.host},
            {"name": "redisPassword", "value": ""},
        ]
        self.resources = write_components(
            tmp / "resources", broker.host, self.topic, state=("state.redis", on_state_redis)
        )
        self.logs = log_dir_for(tmp)
        self.api = Replica("api")
        self.worker = Replica("worker")
        self.started: list[Replica] = []

    def start(self, replica: Replica, **env: str) -> None:
        self.started.append(replica)
        replica.start_sidecar(self.resources, self.logs)
        replica.start_app(self.topic, self.logs, **env)

    def wipe_broker(self) -> None:
        """kill -9 the broker's Redis and start it again without its files."""
        self.broker.kill9()
        for path in self.broker.data_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        self.broker.restart()

    def stop(self) -> None:
        for replica in self.started:
            replica.stop()


@pytest.fixture
def cluster(redis_server: RedisServer, own_redis: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(redis_server, own_redis, tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


def _reannounced(client: httpx.Client) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "job_orchestrator_jobs_reannounced":
            return float(family.samples[0].value)
    raise AssertionError("no job_orchestrator_jobs_reannounced metric")


def test_jobs_whose_queued_event_the_broker_lost_are_announced_again_and_run(
    cluster: Cluster,
) -> None:
    cluster.start(cluster.api, APP_ENV="api", JOB_REQUEUE_AFTER_SECONDS=str(REQUEUE_AFTER_SECONDS))
    with httpx.Client(base_url=cluster.api.url, timeout=20) as client:
        ids = []
        for n in range(JOBS):
            resp = client.post("/jobs", json={"input": {"seconds": 0.1 * (n + 1)}})
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        cluster.wipe_broker()
        cluster.start(cluster.worker, APP_ENV="worker")

        def finished() -> bool:
            return all(client.get(f"/jobs/{i}").json()["status"] == "Completed" for i in ids)

        wait_until(finished, timeout=FINISHED_WITHIN)
        for job_id in ids:
            job = client.get(f"/jobs/{job_id}").json()
            assert job["attempt"] == 1, job  # ran once: the second announcement made no rerun
            assert job["worker"] == cluster.worker.app.env["REPLICA_NAME"]  # type: ignore[union-attr]
        assert _reannounced(client) >= JOBS


def test_a_job_merely_waiting_for_a_worker_runs_once_however_often_it_is_announced(
    cluster: Cluster,
) -> None:
    """No worker for several requeue periods: each look finds the job New and announces it
    again, so the queue holds several copies of its job.created. It still runs exactly once."""
    cluster.start(cluster.api, APP_ENV="api", JOB_REQUEUE_AFTER_SECONDS="0.5")
    with httpx.Client(base_url=cluster.api.url, timeout=20) as client:
        resp = client.post("/jobs", json={"type": "wait", "input": {"seconds": 0.1}})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        wait_until(lambda: _reannounced(client) >= 2, timeout=20)
        before = client.get(f"/jobs/{job_id}").json()
        assert before["status"] == "New"
        assert before["sequence"] == 1  # announced again unchanged: the same event
        cluster.start(cluster.worker, APP_ENV="worker")
        wait_until(
            lambda: client.get(f"/jobs/{job_id}").json()["status"] == "Completed",
            timeout=FINISHED_WITHIN,
        )
        job = client.get(f"/jobs/{job_id}").json()
    assert job["attempt"] == 1
    assert job["sequence"] == 3  # New (1), InProgress (2), Completed (3): no change doubled
