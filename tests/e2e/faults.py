"""A whole system to break in fault tests, and the counts those tests report.

Its own append-only Redis (fault tests stop it), orchestrator replicas and microservice-x, each
with its own sidecar, on the project's components with short leases so a lost worker's job is
taken over within seconds.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from redis import Redis

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import write_resiliency
from tests.microservice_x.stack import MX, App, Sidecar, write_components
from tests.procs import free_port

#: Job lease, equal to the `jobqueue` processingTimeout (see components/jobqueue.yaml).
LEASE_SECONDS = 3
TOPIC = "job-events"
FINAL = ("Completed", "Failed", "Canceled")
FINAL_TYPES = ("job.completed", "job.failed", "job.canceled")
#: As the Kubernetes manifests and dapr.yaml have it, with a quicker probe: a replica whose app
#: died stops taking (and holding) queue messages, so the other replicas take its jobs over.
APP_HEALTH_CHECK = (
    "--enable-app-health-check",
    "--app-health-check-path=/healthz",
    "--app-health-probe-interval=1",
    "--app-health-probe-timeout=2000",
    "--app-health-threshold=2",
)
#: Every HTTP call of a fault test is bounded: a hang fails the test instead of stalling it.
CALL_TIMEOUT = httpx.Timeout(20.0, connect=3.0)


def fault_components(target: Path, redis_host: str) -> Path:
    """The project's components on ``redis_host``, with the lease shortened to LEASE_SECONDS."""
    write_components(target, redis_host, 0)
    path = target / "jobqueue.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        items = doc["spec"]["metadata"]
        quick = {"processingTimeout": f"{LEASE_SECONDS}s", "redeliverInterval": "1s"}
        items[:] = [i for i in items if i["name"] not in quick]
        items += [{"name": k, "value": v} for k, v in quick.items()]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    write_resiliency(target, LEASE_SECONDS)
    return target


@dataclass
class Replica:
    """One orchestrator replica: its sidecar and `python -m job_orchestrator`, fixed ports."""

    name: str
    sidecar: Sidecar
    app: App

    @property
    def url(self) -> str:
        return self.app.url

    @property
    def replica_name(self) -> str:
        return self.app.extra_env["REPLICA_NAME"]

    def start(self) -> Replica:
        self.sidecar.start()
        self.app.start()
        self.sidecar.wait_ready()
        return self

    def kill9(self) -> None:
        """kill -9 of the app and its sidecar, as a lost node would do."""
        for part in (self.app, self.sidecar):
            assert part.proc is not None
            part.proc.kill9()

    def restart(self) -> None:
        """A new process of the same replica (new name: it never trusts its former leases)."""
        self.app.extra_env["REPLICA_NAME"] = f"{self.name}-{uuid.uuid4().hex[:6]}"
        self.start()

    def stop(self) -> None:
        self.app.stop()
        self.sidecar.stop()


@dataclass
class System:
    redis: RedisServer
    components: Path
    registry: Path
    logs: Path
    replicas: list[Replica] = field(default_factory=list)
    mx_sidecar: Sidecar | None = None
    mx: App | None = None

    def client(self, url: str) -> httpx.Client:
        return httpx.Client(base_url=url, timeout=CALL_TIMEOUT)

    def add_replica(self, name: str) -> Replica:
        app_port = free_port()
        logs = self.logs / name
        logs.mkdir(parents=True, exist_ok=True)
        sidecar = Sidecar(
            "job-orchestrator",
            self.components,
            self.registry,
            app_port,
            log_dir=logs,
            extra_args=list(APP_HEALTH_CHECK),
        )
        env = {
            "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "REPLICA_NAME": f"{name}-{uuid.uuid4().hex[:6]}",
        }
        replica = Replica(name, sidecar, App("job_orchestrator", sidecar, app_port, env))
        self.replicas.append(replica)
        return replica.start()

    def start_mx(self) -> App:
        """microservice-x and its sidecar (again after a kill: same ports, same consumer group)."""
        if self.mx_sidecar is None:
            logs = self.logs / "mx"
            logs.mkdir(parents=True, exist_ok=True)
            self.mx_sidecar = Sidecar(MX, self.components, self.registry, free_port(), log_dir=logs)
        assert self.mx_sidecar.app_port is not None
        self.mx_sidecar.start()
        self.mx = App("microservice_x", self.mx_sidecar, self.mx_sidecar.app_port).start()
        self.mx_sidecar.wait_ready()
        return self.mx

    def redis_client(self) -> Redis:
        return Redis(port=self.redis.port, socket_timeout=10, socket_connect_timeout=3)

    def entries(self) -> list[dict[bytes, bytes]]:
        """The fields of every entry of the `job-events` stream, oldest first."""
        conn = self.redis_client()
        try:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = conn.xrange(TOPIC)  # type: ignore[assignment]
        finally:
            conn.close()
        return [fields for _, fields in entries]

    def stream(self) -> list[dict[str, Any]]:
        """Every CloudEvent in the `job-events` stream, oldest first."""
        return [json.loads(fields[b"data"]) for fields in self.entries()]

    def mx_views(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """microservice-x's view of each job it has seen among ``ids``."""
        assert self.mx is not None
        views: dict[str, dict[str, Any]] = {}
        with self.client(self.mx.url) as client:
            for job_id in ids:
                resp = client.get(f"/jobs/{job_id}")
                if resp.status_code == 200:
                    views[job_id] = resp.json()
                else:
                    assert resp.status_code == 404, resp.text
        return views

    def stop(self) -> None:
        for part in (self.mx, self.mx_sidecar, *self.replicas):
            if part is not None:
                part.stop()


@contextmanager
def running_system(replicas: int, *, with_mx: bool = True) -> Iterator[System]:
    """A fresh system on a fresh Redis; everything stopped and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="faults-"))
    server = RedisServer(free_port(), base / "redis")
    system = System(server, fault_components(base / "components", server.host), base / "reg", base)
    try:
        for index in range(replicas):
            system.add_replica("abcdefgh"[index])
        if with_mx:
            system.start_mx()
        yield system
    finally:
        system.stop()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def finals_of(client: httpx.Client, ids: list[str], deadline: float) -> dict[str, dict[str, Any]]:
    """Each job once final (long-polling), until ``deadline`` (monotonic); the rest left out."""
    found: dict[str, dict[str, Any]] = {}
    for job_id in ids:
        while job_id not in found:
            left = deadline - time.monotonic()
            if left <= 0:
                return found
            try:
                resp = client.get(f"/jobs/{job_id}", params={"wait": min(10.0, max(0.5, left))})
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if resp.status_code == 200 and resp.json()["status"] in FINAL:
                found[job_id] = resp.json()
            elif resp.status_code not in (200, 503):
                raise AssertionError(f"GET /jobs/{job_id}: {resp.status_code} {resp.text}")
    return found


@dataclass
class Tally:
    """What a fault test counts: submitted, accepted, final, delivered, duplicates, lost."""

    fault: str
    submitted: int = 0
    accepted: int = 0  #: answered 200/202: the system owes these a final status and event
    refused: int = 0  #: answered 503 problem+json with Retry-After
    final: int = 0
    events: int = 0  #: CloudEvents of the accepted jobs in the stream
    duplicates: int = 0  #: events of a job change already in the stream (at-least-once)
    #: job changes published twice with different contents (an event no state matches)
    conflicting: int = 0
    delivered: int = 0  #: accepted jobs whose final status microservice-x shows
    lost: int = 0  #: accepted jobs not final, or whose change or final event never arrived
    twice_final: int = 0  #: jobs with two different final outcomes published
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        counts = (
            f"submitted={self.submitted} accepted={self.accepted} refused={self.refused} "
            f"final={self.final} events={self.events} duplicates={self.duplicates} "
            f"delivered={self.delivered} lost={self.lost} twice_final={self.twice_final} "
            f"conflicting={self.conflicting}"
        )
        return f"FAULT {self.fault}: {counts}"

    def report(self) -> None:
        print(self.line())  # noqa: T201 - the counts are this test's report
        for note in self.notes[:10]:
            print(f"  {note}")  # noqa: T201


def check_stream(tally: Tally, events: list[dict[str, Any]], finals: dict[str, Any]) -> None:
    """Count events, duplicates, missing changes and double outcomes of the jobs in ``finals``.

    Every committed change of a job has its own `sequence` (1, 2, ...), so a complete history in
    the stream holds each sequence up to the final one; a second distinct final outcome would
    show as two final events that disagree.
    """
    by_job: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("subject") in finals:
            by_job.setdefault(event["subject"], []).append(event)
    for job_id, job in finals.items():
        mine = by_job.get(job_id, [])
        tally.events += len(mine)
        changes = Counter(e["data"]["sequence"] for e in mine)
        tally.duplicates += sum(n - 1 for n in changes.values())
        contents: dict[int, set[str]] = {}
        for event in mine:
            data = json.dumps(event["data"], sort_keys=True)
            contents.setdefault(event["data"]["sequence"], set()).add(data)
        for sequence, versions in contents.items():
            if len(versions) > 1:
                tally.conflicting += 1
                tally.notes.append(f"{job_id}: change {sequence} published as {len(versions)}")
        missing = set(range(1, job["sequence"] + 1)) - set(changes)
        ends = {(e["type"], e["data"]["sequence"], e["data"]["status"]) for e in mine}
        ends = {end for end in ends if end[0] in FINAL_TYPES}
        if missing or not ends:
            tally.lost += 1
            tally.notes.append(f"{job_id}: changes {sorted(missing)} / final event never published")
        if len(ends) > 1:
            tally.twice_final += 1
            tally.notes.append(f"{job_id}: final events {sorted(ends)}")
        elif ends and next(iter(ends))[2] != job["status"]:
            tally.twice_final += 1
            tally.notes.append(f"{job_id}: event says {ends}, the job {job['status']}")


def check_views(tally: Tally, views: dict[str, Any], finals: dict[str, Any]) -> None:
    """microservice-x shows each final job as final, with each change once."""
    for job_id, job in finals.items():
        view = views.get(job_id)
        if view is None or view["status"] != job["status"]:
            tally.notes.append(f"{job_id}: microservice-x shows {view and view['status']}")
            continue
        sequences = [e["sequence"] for e in view["events"]]
        if sequences != list(range(1, job["sequence"] + 1)):
            tally.notes.append(f"{job_id}: microservice-x saw sequences {sequences}")
            continue
        tally.delivered += 1
