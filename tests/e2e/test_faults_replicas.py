"""Orchestrator replicas lost with kill -9 while their jobs run, and a load run through it.

test_orchestrator_replicas.py shows one job taken over after its replica died. These add what
the callers see: requests waiting on the surviving replica are answered, no job ends twice, and
microservice-x gets every final event; the same when only the replica's sidecar dies, or only its
app (its sidecar, which checks the app's health, must then let the jobs go); and a
load run with two replicas, one killed and restarted in the middle, loses nothing.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.faults import (
    FINAL,
    LEASE_SECONDS,
    Replica,
    System,
    Tally,
    check_stream,
    check_views,
    finals_of,
    running_system,
)
from tests.microservice_x.stack import MX
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

JOB_SECONDS = 3.0
WAIT_SECONDS = 40.0
#: Load run: submissions stop at whichever comes first.
LOAD_MAX_JOBS = 3000
LOAD_SUBMIT_SECONDS = 45.0
LOAD_CLIENTS = 8
#: Short, but long enough that the killed replica is running some when it dies.
LOAD_JOB_SECONDS = 0.2


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with running_system(2) as built:
        yield built


def start_running_jobs(system: System, count: int) -> dict[str, str]:
    """Submit ``count`` jobs and wait until each runs; job id -> the replica name running it."""
    with system.client(system.replicas[0].url) as client:
        ids = []
        for _ in range(count):
            body = {"type": "wait", "input": {"seconds": JOB_SECONDS}, "owner": MX}
            resp = client.post("/jobs", json=body)
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        workers: dict[str, str] = {}

        def all_running() -> bool:
            for job_id in ids:
                job = client.get(f"/jobs/{job_id}").json()
                if job["status"] == "InProgress":
                    workers[job_id] = job["worker"]
            return len(workers) == count

        wait_until(all_running, timeout=20, interval=0.1)
    return workers


def victim_of(system: System, workers: dict[str, str]) -> tuple[Replica, Replica]:
    """The replica running the most of these jobs, and the other one."""
    busiest = Counter(workers.values()).most_common(1)[0][0]
    victim = next(r for r in system.replicas if r.replica_name == busiest)
    survivor = next(r for r in system.replicas if r is not victim)
    return victim, survivor


def wait_on(
    pool: ThreadPoolExecutor, client: httpx.Client, ids: list[str]
) -> list[Future[httpx.Response]]:
    """One long-polling GET per job, all in flight at once."""

    def one(job_id: str) -> httpx.Response:
        return client.get(f"/jobs/{job_id}", params={"wait": WAIT_SECONDS})

    return [pool.submit(one, job_id) for job_id in ids]


def outcome_checks(
    system: System, via: Replica, tally: Tally, answers: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Re-read every job once more (its final status must not have moved) and count events."""
    with system.client(via.url) as client:
        finals = finals_of(client, list(answers), time.monotonic() + 30)
    moved = [i for i in answers if i in finals and finals[i]["status"] != answers[i]["status"]]
    tally.twice_final += len(moved)
    tally.final = len(finals)
    check_stream(tally, system.stream(), finals)

    def all_delivered() -> bool:
        probe = Tally(tally.fault)
        check_views(probe, system.mx_views(list(finals)), finals)
        return probe.delivered == len(finals)

    try:
        wait_until(all_delivered, timeout=30, interval=0.5)
    except TimeoutError:
        pass  # counted below
    check_views(tally, system.mx_views(list(finals)), finals)
    tally.lost += tally.accepted - tally.final
    return finals


@pytest.mark.parametrize("killed", ["replica", "sidecar", "app"])
def test_jobs_of_a_killed_replica_end_once_and_waiters_elsewhere_are_answered(
    system: System, killed: str
) -> None:
    workers = start_running_jobs(system, 6)
    victim, survivor = victim_of(system, workers)
    theirs = [job_id for job_id, name in workers.items() if name == victim.replica_name]
    tally = Tally(f"kill -9 of an orchestrator {killed} mid-job")
    tally.submitted = tally.accepted = len(workers)
    pool = ThreadPoolExecutor(len(workers))
    waiting = httpx.Client(base_url=survivor.url, timeout=httpx.Timeout(WAIT_SECONDS + 20))
    waits = wait_on(pool, waiting, list(workers))
    started = time.monotonic()
    try:
        if killed == "replica":
            victim.kill9()
        else:
            # Only one part: the other stays up, and must not keep the victim's jobs.
            part = victim.sidecar if killed == "sidecar" else victim.app
            assert part.proc is not None
            part.proc.kill9()
        answers = {
            job_id: wait.result(timeout=WAIT_SECONDS + 30)
            for job_id, wait in zip(workers, waits, strict=True)
        }
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        waiting.close()
    waited = time.monotonic() - started
    bodies = {job_id: resp.json() for job_id, resp in answers.items()}
    finals = outcome_checks(system, survivor, tally, bodies)
    taken_over = [finals[i] for i in theirs if i in finals]
    tally.notes.append(
        f"{len(theirs)} jobs ran on the victim; all waits answered within {waited:.1f}s; "
        f"takeovers {[(j['attempt'], j['worker'] != victim.replica_name) for j in taken_over]}"
    )
    # The victim comes back for the next test, and shows it rejoins by itself.
    back = time.monotonic()
    if killed == "replica":
        victim.restart()
    elif killed == "sidecar":
        victim.sidecar.start()
        victim.sidecar.wait_ready()
    else:
        victim.app.extra_env["REPLICA_NAME"] = f"{victim.name}-again"  # a new process, new name
        victim.app.start()
        victim.sidecar.wait_ready()
    reconnect = serves_again(victim)
    tally.notes.append(
        f"back in {time.monotonic() - back:.1f}s (first job run {reconnect:.1f}s after its start)"
    )
    tally.report()

    assert theirs, workers
    assert all(resp.status_code == 200 for resp in answers.values()), answers
    assert all(b["status"] in FINAL for b in bodies.values()), bodies
    # Answered when the job ended (takeover after a lease, then the job), not at the deadline.
    assert waited < WAIT_SECONDS - 5, waited
    for job in taken_over:
        assert job["status"] == "Completed", job
        assert job["worker"] != victim.replica_name, job
        assert job["attempt"] == 2, job
    assert tally.final == tally.accepted, tally.line()
    assert tally.lost == 0, tally.notes
    assert tally.twice_final == 0, tally.notes
    assert tally.conflicting == 0, tally.notes
    assert tally.delivered == tally.accepted, tally.notes


def serves_again(replica: Replica, timeout: float = 30) -> float:
    """Seconds until ``replica`` runs a job again (503 while it reconnects); fail after timeout."""
    started = time.monotonic()
    with httpx.Client(base_url=replica.url, timeout=httpx.Timeout(30, connect=3)) as client:
        while time.monotonic() - started < timeout:
            resp = client.post(
                "/jobs", json={"input": {"seconds": 0}}, headers={"Prefer": "wait=9"}
            )
            if resp.status_code == 200:
                assert resp.json()["status"] == "Completed", resp.text
                return time.monotonic() - started
            assert resp.status_code == 503, resp.text
            time.sleep(0.2)
    raise AssertionError(f"{replica.name} did not serve again within {timeout}s")


class Load:
    """Clients submitting short jobs round-robin to the replicas, failing over like a balancer."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.ids: list[str] = []
        self.refused = 0  #: 503 answers
        self.unreachable = 0  #: connections refused by the killed replica (then the other one)
        self.submitted = 0
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._turn = itertools.count()

    def client_loop(self, deadline: float) -> None:
        clients = [self.system.client(r.url) for r in self.system.replicas]
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self.submitted >= LOAD_MAX_JOBS:
                        return
                    self.submitted += 1
                first = next(self._turn)
                self._submit(clients, first)
        finally:
            for client in clients:
                client.close()

    def _submit(self, clients: list[httpx.Client], first: int) -> None:
        body = {"type": "wait", "input": {"seconds": LOAD_JOB_SECONDS}, "owner": MX}
        for attempt in range(2 * len(clients)):
            client = clients[(first + attempt) % len(clients)]
            try:
                resp = client.post("/jobs", json=body)
            except httpx.TransportError:
                with self._lock:
                    self.unreachable += 1
                continue
            if resp.status_code == 202 or resp.status_code == 200:
                with self._lock:
                    self.ids.append(resp.json()["id"])
                return
            with self._lock:
                if resp.status_code == 503:
                    self.refused += 1
                else:
                    self.unexpected.append(f"{resp.status_code} {resp.text[:200]}")
        with self._lock:
            self.unexpected.append("no replica accepted the job")

    def stop(self) -> None:
        self._stop.set()


@pytest.mark.timeout(200)  # submitting 25 s, then bounded waits for finals and deliveries
def test_load_with_a_replica_killed_and_restarted_loses_nothing(system: System) -> None:
    tally = Tally("load, 2 replicas, one killed -9 and restarted")
    load = Load(system)
    victim = system.replicas[1]
    started = time.monotonic()
    deadline = started + LOAD_SUBMIT_SECONDS
    threads = [
        threading.Thread(target=load.client_loop, args=(deadline,), daemon=True)
        for _ in range(LOAD_CLIENTS)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(load.ids) >= 100, timeout=LOAD_SUBMIT_SECONDS)
        victim.kill9()
        killed_at = time.monotonic() - started
        # Down for longer than a lease, so its held jobs must come back through redelivery.
        wait_until(lambda: time.monotonic() - started > killed_at + LEASE_SECONDS, timeout=10)
        victim.restart()
        restarted_at = time.monotonic() - started
    finally:
        for thread in threads:
            thread.join(timeout=LOAD_SUBMIT_SECONDS + 30)
        load.stop()
    submit_seconds = time.monotonic() - started
    assert not any(t.is_alive() for t in threads)
    tally.submitted = load.submitted
    tally.accepted = len(load.ids)
    tally.refused = load.refused
    with system.client(system.replicas[0].url) as client:
        finals = finals_of(client, load.ids, time.monotonic() + 50)
    tally.final = len(finals)
    final_seconds = time.monotonic() - started
    check_stream(tally, system.stream(), finals)

    def all_delivered() -> bool:
        probe = Tally(tally.fault)
        check_views(probe, system.mx_views(load.ids), finals)
        return probe.delivered == len(finals)

    try:
        wait_until(all_delivered, timeout=40, interval=1)
    except TimeoutError:
        pass  # counted below
    check_views(tally, system.mx_views(load.ids), finals)
    tally.lost += tally.accepted - tally.final
    statuses = Counter(j["status"] for j in finals.values())
    attempts = Counter(j["attempt"] for j in finals.values())
    tally.notes.append(
        f"killed at {killed_at:.1f}s, back at {restarted_at:.1f}s, submitting for "
        f"{submit_seconds:.1f}s, all final at {final_seconds:.1f}s; statuses {dict(statuses)}, "
        f"attempts {dict(attempts)}, {load.unreachable} connections refused (failed over), "
        f"unexpected answers {load.unexpected[:3]}"
    )
    tally.report()
    assert not load.unexpected, load.unexpected
    assert tally.accepted >= 200, tally.line()  # a load run, not a handful
    assert tally.final == tally.accepted, tally.line()
    assert statuses == {"Completed": tally.accepted}, statuses
    assert tally.lost == 0, tally.notes
    assert tally.twice_final == 0, tally.notes
    assert tally.conflicting == 0, tally.notes
    assert tally.delivered == tally.accepted, tally.notes
