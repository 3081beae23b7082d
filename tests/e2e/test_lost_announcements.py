"""A job whose ``job.created`` event was lost after it was saved is announced again, so it runs.

The fault is made for real: the state store and the broker are two Redis servers, and the
broker is killed and comes back empty while the jobs wait in its queue (no worker replica runs
yet), as a broker restarted without its data or a failover that lost recent writes leaves it.
daprd's outbox relay loses events the same way when the state store is unreadable for ~10 s.
Before, such jobs stayed New forever; and until the ledgers (handover.py), so did those whose
creating replica died too before it looked at them.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from job_orchestrator.jobs import new_job
from job_orchestrator.ledgers import directory_key, ledger_key
from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, log_dir_for, sidecar_state, write_components
from tests.procs import PostgresCluster, wait_until

pytestmark = pytest.mark.e2e

JOBS = 3
REQUEUE_AFTER_SECONDS = 2
#: Bound on how long the lost jobs take to finish once a worker runs (a few sweeps, one run).
FINISHED_WITHIN = 45.0


class Cluster:
    """Its own state store and broker Redis; an API replica now, a worker replica later."""

    def __init__(
        self, state: tuple[str, list[dict[str, Any]]], broker: RedisServer, tmp: Path
    ) -> None:
        self.broker = broker
        self.topic = f"job-events-{uuid.uuid4().hex[:8]}"
        self.resources = write_components(tmp / "resources", broker.host, self.topic, state=state)
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
    on_state_redis = [
        {"name": "redisHost", "value": redis_server.host},
        {"name": "redisPassword", "value": ""},
    ]
    cluster = Cluster(("state.redis", on_state_redis), own_redis, tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_cluster(
    request: pytest.FixtureRequest, own_redis: RedisServer, tmp_path: Path
) -> Iterator[Cluster]:
    """The state in PostgreSQL (the query API), the broker on a Redis of its own."""
    pg: PostgresCluster = request.getfixturevalue("postgres_server")
    on_postgres = [
        {"name": "connectionString", "value": pg.dsn},
        {"name": "tableName", "value": f"state_{uuid.uuid4().hex[:8]}"},
    ]
    cluster = Cluster(("state.postgresql", on_postgres), own_redis, tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


def _submit(client: httpx.Client) -> list[str]:
    """JOBS jobs of different lengths; their ids."""
    ids = []
    for n in range(JOBS):
        resp = client.post("/jobs", json={"input": {"seconds": 0.1 * (n + 1)}})
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    return ids


def _wait_ran_once(client: httpx.Client, ids: list[str], worker: Replica) -> None:
    """Every job Completed, by ``worker``, in one attempt (an announcement again made no rerun)."""

    def finished() -> bool:
        return all(client.get(f"/jobs/{i}").json()["status"] == "Completed" for i in ids)

    wait_until(finished, timeout=FINISHED_WITHIN)
    for job_id in ids:
        job = client.get(f"/jobs/{job_id}").json()
        assert job["attempt"] == 1, job
        assert job["worker"] == worker.app.env["REPLICA_NAME"]  # type: ignore[union-attr]


def _counter(client: httpx.Client, name: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == name:
            return float(family.samples[0].value)
    raise AssertionError(f"no {name} metric")


def _reannounced(client: httpx.Client) -> float:
    return _counter(client, "job_orchestrator_jobs_reannounced")


def _in_ledgers(replica: Replica, topic: str) -> set[str]:
    """The jobs the ledgers of the topic's replicas list, read through ``replica``'s sidecar."""
    listed = sidecar_state(replica.http_port, directory_key(topic)) or {}
    jobs: set[str] = set()
    for instance in listed.get("instances", []):
        ledger = sidecar_state(replica.http_port, ledger_key(instance)) or {}
        jobs.update(job_id for job_id, _ in ledger.get("jobs", []))
    return jobs


def test_jobs_whose_queued_event_the_broker_lost_are_announced_again_and_run(
    cluster: Cluster,
) -> None:
    cluster.start(cluster.api, APP_ENV="api", JOB_REQUEUE_AFTER_SECONDS=str(REQUEUE_AFTER_SECONDS))
    with httpx.Client(base_url=cluster.api.url, timeout=20) as client:
        ids = _submit(client)
        cluster.wipe_broker()
        cluster.start(cluster.worker, APP_ENV="worker")
        _wait_ran_once(client, ids, cluster.worker)
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


def test_jobs_whose_creator_died_with_their_events_lost_are_taken_over_and_run(
    cluster: Cluster,
) -> None:
    """The same lost events, and the replica that created the jobs is killed -9 before it
    looks at them, taking its table of unheard-of jobs with it. Another API replica, started
    later, finds its ledger unchanged, takes its jobs over, and announces them again."""
    env = {"APP_ENV": "api", "JOB_REQUEUE_AFTER_SECONDS": str(REQUEUE_AFTER_SECONDS)}
    cluster.start(cluster.api, **env)
    with httpx.Client(base_url=cluster.api.url, timeout=20) as client:
        ids = _submit(client)
    # Saved within a sweep (a quarter of the requeue time).
    wait_until(lambda: set(ids) <= _in_ledgers(cluster.api, cluster.topic), timeout=20)
    cluster.wipe_broker()
    for proc in (cluster.api.app, cluster.api.sidecar):
        assert proc is not None
        proc.kill9()
    heir = Replica("heir")
    cluster.start(heir, **env)
    cluster.start(cluster.worker, APP_ENV="worker")
    with httpx.Client(base_url=heir.url, timeout=20) as client:
        _wait_ran_once(client, ids, cluster.worker)
        assert _counter(client, "job_orchestrator_jobs_adopted") == JOBS
        assert _reannounced(client) >= JOBS


@pytest.mark.filterwarnings("ignore:The State Store Query API:UserWarning")
def test_jobs_a_dead_replica_created_after_its_last_save_are_found_by_query_and_run(
    pg_cluster: Cluster,
) -> None:
    """Jobs created in the second between a replica's last ledger save and its kill -9 are in
    no ledger. They are made here as a creation writes them (naming the replica's ledger in
    ``createdBy``), straight to the store with no event, so none is in the ledger whatever the
    timing. On a store with the query API the heir finds them and announces them; before, they
    stayed New."""
    cluster = pg_cluster
    cluster.start(cluster.api, APP_ENV="api", JOB_REQUEUE_AFTER_SECONDS="20")
    directory = directory_key(cluster.topic)
    # Its first save, at start, lists it.
    wait_until(lambda: sidecar_state(cluster.api.http_port, directory) is not None, timeout=20)
    (instance,) = sidecar_state(cluster.api.http_port, directory)["instances"]
    made = [
        new_job(
            str(uuid.uuid4()),
            "wait",
            {"seconds": 0.1},
            owner=None,
            max_attempts=1,
            run_timeout_seconds=None,
            now=time.time(),
            created_by=instance,
        )
        for _ in range(JOBS)
    ]
    rows = [{"key": f"job-{job.id}", "value": job.to_record()} for job in made]
    saved = httpx.post(f"http://127.0.0.1:{cluster.api.http_port}/v1.0/state/statestore", json=rows)
    assert saved.status_code == 204, saved.text
    for proc in (cluster.api.app, cluster.api.sidecar):
        assert proc is not None
        proc.kill9()
    heir = Replica("heir")
    cluster.start(heir, APP_ENV="api", JOB_REQUEUE_AFTER_SECONDS=str(REQUEUE_AFTER_SECONDS))
    cluster.start(cluster.worker, APP_ENV="worker")
    with httpx.Client(base_url=heir.url, timeout=20) as client:
        _wait_ran_once(client, [job.id for job in made], cluster.worker)
        assert _counter(client, "job_orchestrator_jobs_adopted") == JOBS


def test_a_replica_that_stops_leaves_its_unheard_jobs_in_a_stopped_ledger(
    cluster: Cluster,
) -> None:
    """On SIGTERM the replica saves its table as stopped, for the next replica to take at once
    (tests/job_orchestrator/test_handover.py), instead of after the ledger goes stale."""
    cluster.start(cluster.api, APP_ENV="api")  # no worker: the jobs stay unheard of
    with httpx.Client(base_url=cluster.api.url, timeout=20) as client:
        resp = client.post("/jobs", json={"input": {"seconds": 0.1}})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
    cluster.api.stop()
    cluster.start(cluster.worker, APP_ENV="worker")  # a sidecar to read the store through
    listed = sidecar_state(cluster.worker.http_port, directory_key(cluster.topic))
    (instance,) = listed["instances"]
    ledger = sidecar_state(cluster.worker.http_port, ledger_key(instance))
    assert ledger["stopped"] is True
    assert [entry[0] for entry in ledger["jobs"]] == [job_id]
