"""A state-store outage on the outbox's long way: no final event lost, few messages left behind.

The store here is PostgreSQL, so events take the outbox's long way: the sidecar puts an internal
message on a topic before it commits, and a relay reads the commit's marker from the store
before it publishes. Faults are made for real, by kill -9 of the server.

- The relay gives an event up after ~10 s of failed reads (daprd's, and the sidecar's on
  another replica). Which relay takes a message cannot be chosen, so the tests check what makes
  the loss harmless: the writer announces its recent finals again after the store failed, and
  leaves alone the ones whose window passed with the store answering.
- Every change the store refuses still leaves its internal message, which a relay looks up for
  ~10 s: the replica stops sending changes after a second of failures, but for trials.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, log_dir_for, write_components
from tests.procs import PostgresCluster, free_port, postgres_bin_dir, wait_until

pytestmark = [
    pytest.mark.e2e,
    # The SDK warns on every query_state call that the query API is alpha (raised in the app).
    pytest.mark.filterwarnings("ignore:The State Store Query API:UserWarning"),
]

#: The watch on each final (JOB_FINALS_AT_RISK_SECONDS), short so a test can outlive it.
AT_RISK_SECONDS = 6
#: Bound on the announcement once the store is back (a tick, a read, a write, the relay).
ANNOUNCED_WITHIN = 30.0


class Cluster:
    """One orchestrator replica on its own PostgreSQL (state) and the shared Redis (broker)."""

    def __init__(self, pg: PostgresCluster, broker: RedisServer, tmp: Path) -> None:
        self.pg = pg
        self.broker = broker
        self.topic = f"job-events-{uuid.uuid4().hex[:8]}"
        state = [
            {"name": "connectionString", "value": pg.dsn},
            {"name": "tableName", "value": f"state_{uuid.uuid4().hex[:8]}"},
        ]
        resources = write_components(
            tmp / "resources", broker.host, self.topic, state=("state.postgresql", state)
        )
        self.replica = Replica("one")
        logs = log_dir_for(tmp)
        self.replica.start_sidecar(resources, logs)
        self.replica.start_app(self.topic, logs, JOB_FINALS_AT_RISK_SECONDS=str(AT_RISK_SECONDS))
        self.client = httpx.Client(base_url=self.replica.url, timeout=30)

    def finals_of(self, job_id: str) -> list[dict[str, Any]]:
        """The job's final events on the topic, as the broker holds them."""
        conn = redis.Redis(host="127.0.0.1", port=self.broker.port)
        try:
            entries = conn.xrange(self.topic)
        finally:
            conn.close()
        events = [json.loads(fields[b"data"]) for _, fields in entries]
        return [e for e in events if e["subject"] == job_id and e["type"] == "job.completed"]

    def metric(self, name: str) -> float:
        for family in text_string_to_metric_families(self.client.get("/metrics").text):
            if family.name == name:
                return float(family.samples[0].value)
        raise AssertionError(f"no {name} metric")

    def completed_job(self) -> str:
        resp = self.client.post(
            "/Jobs/StartJobWithTimeout", json={"input": {"seconds": 0}, "timeoutSeconds": 10}
        )
        assert resp.status_code == 200, resp.text
        job_id: str = resp.json()["id"]
        wait_until(lambda: len(self.finals_of(job_id)) == 1, timeout=10)
        return job_id

    def store_outage(self, seconds: float) -> None:
        """kill -9 PostgreSQL, start it again ``seconds`` later (the replica asks the store at
        least once a second meanwhile, while a final is at risk)."""
        self.pg.kill9()
        time.sleep(seconds)
        self.pg.restart()

    def internal_messages(self) -> int:
        """Messages on the outbox's internal topic so far (relayed or not); daprd names it
        namespace + app id + topic + "outbox", the namespace "default" outside Kubernetes."""
        conn = redis.Redis(host="127.0.0.1", port=self.broker.port)
        try:
            return int(conn.xlen(f"defaultjob-orchestrator{self.topic}outbox"))
        finally:
            conn.close()

    def stop(self) -> None:
        self.client.close()
        self.replica.stop()


@pytest.fixture
def cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries are not installed (.ci/run installs them)")
    pg = PostgresCluster(free_port()).start()
    try:
        cluster = Cluster(pg, redis_server, tmp_path)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        pg.stop()


def test_a_final_written_just_before_the_store_failed_is_announced_again(
    cluster: Cluster,
) -> None:
    """Nothing else asks the store after the job: the replica's own probe sees the outage."""
    job_id = cluster.completed_job()
    cluster.store_outage(seconds=3)
    wait_until(lambda: len(cluster.finals_of(job_id)) == 2, timeout=ANNOUNCED_WITHIN)
    first, again = cluster.finals_of(job_id)
    # The same event: same job, same sequence (subscribers see a duplicate), new CloudEvent id.
    assert again["data"] == first["data"]
    assert again["id"] != first["id"]
    assert cluster.metric("job_orchestrator_finals_reannounced") == 1
    assert cluster.metric("job_orchestrator_finals_suspect") == 0
    job = cluster.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "Completed"
    assert job["sequence"] == first["data"]["sequence"]


def test_a_final_whose_watch_passed_with_the_store_answering_is_not_announced_again(
    cluster: Cluster,
) -> None:
    job_id = cluster.completed_job()
    time.sleep(AT_RISK_SECONDS + 2)  # the replica probes the store meanwhile: it answers
    other = cluster.completed_job()
    cluster.store_outage(seconds=3)
    wait_until(lambda: len(cluster.finals_of(other)) == 2, timeout=ANNOUNCED_WITHIN)
    assert len(cluster.finals_of(job_id)) == 1
    assert cluster.metric("job_orchestrator_finals_reannounced") == 1


def test_submissions_to_a_store_that_stays_down_leave_few_outbox_messages(
    cluster: Cluster,
) -> None:
    """Each refused submission would hold a relay worker ~10 s after the outage: hundreds of
    them delay every later event. After a second of failures, one change per 0.5 s is sent."""
    cluster.completed_job()
    before = cluster.internal_messages()
    assert before >= 3  # the job's creation, claim and completion went this way
    cluster.pg.kill9()
    first = cluster.client.post("/jobs", json={"input": {"seconds": 0}})
    assert first.status_code == 503, first.text
    time.sleep(1.2)
    started = time.monotonic()
    answers = [cluster.client.post("/jobs", json={"input": {"seconds": 0}}) for _ in range(40)]
    took = time.monotonic() - started
    assert {a.status_code for a in answers} == {503}
    assert all(a.headers["retry-after"] for a in answers)
    left = cluster.internal_messages() - before
    # The first submissions, the trials (one per 0.5 s); the relay's lookups add none.
    assert left <= 3 + took / 0.5, (left, took)
    assert "not tried" in answers[-1].json()["detail"]
    assert cluster.metric("job_orchestrator_changes_held_back") >= 40 - 1 - took / 0.5

    cluster.pg.restart()

    def accepted() -> bool:
        return cluster.client.post("/jobs", json={"input": {"seconds": 0}}).status_code == 202

    wait_until(accepted, timeout=20, interval=0.2)
