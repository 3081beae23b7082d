"""Two orchestrator replicas, each with its own sidecar, on one real Redis.

Competing consumers, a wait answered on the other replica, cancel racing completion, and a
replica killed with kill -9 in the middle of a job (last: it leaves one replica).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, log_dir_for, write_components
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 4


@dataclass
class Cluster:
    replicas: list[Replica]
    names: dict[str, Replica]  #: REPLICA_NAME -> replica
    topic: str
    redis_port: int

    def client(self, index: int) -> httpx.Client:
        return httpx.Client(base_url=self.replicas[index].url, timeout=60)

    def events_of(self, job_id: str) -> list[dict[str, Any]]:
        conn = redis.Redis(port=self.redis_port)
        try:
            entries = conn.xrange(self.topic)
        finally:
            conn.close()
        found = [json.loads(fields[b"data"]) for _, fields in entries]
        return [e for e in found if e.get("subject") == job_id]


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("orchestrator-e2e")
    topic = f"job-events-{uuid.uuid4().hex[:8]}"
    resources = write_components(
        tmp / "resources", redis_server.host, topic, lease=f"{LEASE_SECONDS}s", redeliver="1s"
    )
    logs = log_dir_for(tmp)
    replicas = [Replica("a"), Replica("b")]
    names: dict[str, Replica] = {}
    try:
        for replica in replicas:
            replica.start_sidecar(resources, logs)
        for replica in replicas:
            env = {"JOB_LEASE_SECONDS": str(LEASE_SECONDS)}
            replica.start_app(topic, logs, **env)
            assert replica.app is not None
            names[replica.app.env["REPLICA_NAME"]] = replica
        cluster = Cluster(replicas, names, topic, redis_server.port)
        _until_both_consume(cluster)
        yield cluster
    finally:
        for replica in replicas:
            replica.stop()


def _until_both_consume(cluster: Cluster) -> None:
    """Run short jobs until each replica has run one. A sidecar reports ready once it has
    started its subscriptions, but its first read of the queue can come tens of milliseconds
    later (the replica's own start-up shares the two cores): jobs submitted in that gap all go
    to the other replica, which is no test of competing consumers."""
    seen: set[str] = set()
    with cluster.client(0) as client:
        for _ in range(100):
            job = {"input": {"seconds": 0}, "timeoutSeconds": 10}
            done = client.post("/Jobs/StartJobWithTimeout", json=job)
            assert done.status_code == 200, done.text
            seen.add(done.json()["worker"])
            if seen == set(cluster.names):
                return
            time.sleep(0.05)
    raise AssertionError(f"after 100 jobs only {sorted(seen)} had run one")


#: Bursts of jobs submitted at once, until both replicas ran some (see the test's docstring).
BURSTS = 5
BURST_JOBS = 10


def test_replicas_compete_for_jobs_and_each_runs_once(cluster: Cluster) -> None:
    """Both replicas take jobs from the queue, and each job runs once.

    Which replica a job goes to is up to Redis: it hands each new entry of the stream to the
    reader that has waited longest, and the queue's readers see every event of the topic. A
    job's creation and its claim are two entries, so jobs submitted one after the other can
    all land on the same replica (README, "Known limits"); a burst submitted at once spreads,
    but not always. So bursts go out until both replicas ran jobs, and every job of every
    burst must have run exactly once.
    """
    finals: list[dict[str, Any]] = []
    with cluster.client(0) as a, cluster.client(1) as b, ThreadPoolExecutor(8) as pool:

        def submit(_: int) -> str:
            resp = a.post("/jobs", json={"input": {"seconds": 0.5}})
            assert resp.status_code == 202, resp.text
            job_id: str = resp.json()["id"]
            return job_id

        for _ in range(BURSTS):
            ids = list(pool.map(submit, range(BURST_JOBS)))
            finals += [b.get(f"/jobs/{job_id}", params={"wait": 20}).json() for job_id in ids]
            if {j["worker"] for j in finals} == set(cluster.names):
                break
    assert all(j["status"] == "Completed" for j in finals)
    assert all(j["attempt"] == 1 for j in finals)  # nobody ran a job twice
    workers = {j["worker"] for j in finals}
    assert workers == set(cluster.names), f"{len(finals)} jobs, all run by {workers}"
    # The replica that created them heard of each: its own by their queue delivery, the other
    # replica's by their final event. Nothing is left for its requeue to read (after 60 s).
    with cluster.client(0) as a:
        wait_until(lambda: _gauge(a, "job_orchestrator_jobs_unheard") == 0, timeout=10)


def _gauge(client: httpx.Client, name: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == name:
            return float(family.samples[0].value)
    raise AssertionError(f"no {name} metric")


def test_a_wait_is_answered_on_the_other_replica(cluster: Cluster) -> None:
    with cluster.client(0) as a, cluster.client(1) as b:
        job = a.post("/jobs", json={"input": {"seconds": 1}}).json()
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            waits = [pool.submit(c.get, f"/jobs/{job['id']}", params={"wait": 15}) for c in (a, b)]
            answers = [w.result() for w in waits]
            elapsed = time.monotonic() - started
    assert [r.json()["status"] for r in answers] == ["Completed", "Completed"]
    # The same job on both, whichever way it came: the broadcast's changedBy is not shown.
    assert answers[0].json() == answers[1].json()
    # Both answered at completion (about 1 s), far before the 15 s deadline read: one of the two
    # replicas did not run the job and was woken by the broadcast event.
    assert elapsed < 5, elapsed


def test_cancel_racing_completion_ends_in_one_final_status(cluster: Cluster) -> None:
    with cluster.client(0) as a, cluster.client(1) as b:
        for delay in (0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
            job = a.post("/jobs", json={"input": {"seconds": 0.5}}).json()
            time.sleep(delay)
            canceled = b.post(f"/jobs/{job['id']}/cancel")
            final = a.get(f"/jobs/{job['id']}", params={"wait": 15}).json()
            assert final["status"] in ("Completed", "Canceled")
            # The cancel answer agrees with what the job became.
            expected = 200 if final["status"] == "Canceled" else 409
            assert canceled.status_code == expected, canceled.text
            wait_until(lambda j=job: _has_final_event(cluster, j["id"]), timeout=10)
            finals = [
                e["type"]
                for e in cluster.events_of(job["id"])
                if e["type"] in ("job.completed", "job.failed", "job.canceled")
            ]
            assert len(set(finals)) == 1, finals  # duplicates allowed, two outcomes never


def _has_final_event(cluster: Cluster, job_id: str) -> bool:
    return any(
        e["type"] != "job.updated" and e["type"] != "job.created" for e in cluster.events_of(job_id)
    )


def test_a_job_longer_than_its_lease_is_not_stolen(cluster: Cluster) -> None:
    """Redeliveries of a running job (every lease) find it held and leave it to its worker."""
    with cluster.client(0) as a:
        job = a.post("/jobs", json={"input": {"seconds": 2.5 * LEASE_SECONDS}}).json()
        final = a.get(f"/jobs/{job['id']}", params={"wait": 30}).json()
    assert (final["status"], final["attempt"]) == ("Completed", 1)
    events = cluster.events_of(job["id"])
    # Duplicated events are allowed; a second claim would show as attempt 2 or a second worker.
    assert {e["data"]["attempt"] for e in events} == {0, 1}
    summary = [
        (e["type"], e["data"]["sequence"], e["data"]["worker"], e["data"]["attempt"], e["id"])
        for e in events
    ]
    assert {e["data"]["worker"] for e in events} == {None, final["worker"]}, summary


def test_redis_down_is_503_and_work_resumes_after_restart(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    with cluster.client(0) as a:
        running = a.post("/jobs", json={"input": {"seconds": 2}}).json()
        redis_server.stop()
        try:
            down = a.post("/jobs", json={"input": {"seconds": 0}})
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "1"
            assert down.headers["content-type"] == "application/problem+json"
        finally:
            redis_server.restart()
        wait_until(lambda: a.post("/jobs", json={"input": {"seconds": 0}}).status_code == 202)
        after = a.post("/Jobs/StartJobWithTimeout", json={"input": {"seconds": 0}}).json()
        assert after["status"] == "Completed"
        # The job that ran through the outage still ends (retaken after its lease if needed).
        final = a.get(f"/jobs/{running['id']}", params={"wait": 30}).json()
    assert final["status"] == "Completed", final


def test_a_job_survives_its_replica_being_killed(cluster: Cluster) -> None:
    with cluster.client(0) as a:
        job = a.post("/jobs", json={"input": {"seconds": 4}}).json()
        wait_until(lambda: a.get(f"/jobs/{job['id']}").json()["status"] == "InProgress")
        first = a.get(f"/jobs/{job['id']}").json()
    victim = cluster.names[first["worker"]]
    survivor = next(r for r in cluster.replicas if r is not victim)
    assert victim.app is not None and victim.sidecar is not None
    victim.app.kill9()
    victim.sidecar.kill9()
    with httpx.Client(base_url=survivor.url, timeout=60) as s:
        final = s.get(f"/jobs/{job['id']}", params={"wait": 40}).json()
    assert final["status"] == "Completed", final
    assert final["worker"] != first["worker"]
    assert final["attempt"] == 2
    assert final["result"] == {"waitedSeconds": 4.0}
