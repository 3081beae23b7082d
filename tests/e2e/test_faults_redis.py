"""Redis (append-only) stopped and restarted while jobs run and are submitted.

Nothing accepted is lost: every job answered 200/202 ends final, every one of its changes is in
the stream and reaches microservice-x; requests during the outage get 503 problem+json with
Retry-After within a bounded time; the services and sidecars reconnect by themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from tests.e2e.faults import (
    FINAL,
    LEASE_SECONDS,
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

#: No answer may take longer than this, outage or not (the services bound sidecar calls at 10 s).
MAX_ANSWER_SECONDS = 15.0
#: Longer than a lease: jobs running at the stop lose theirs and must be taken over.
OUTAGE_SECONDS = 2 * LEASE_SECONDS
LONG_POLL = 30.0


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with running_system(1) as built:
        yield built


@dataclass
class Answer:
    via: str
    status: int
    content_type: str
    retry_after: str | None
    seconds: float
    during_outage: bool
    job_id: str | None = None


@dataclass
class Submitter:
    """Submits jobs without pause, alternating the orchestrator and microservice-x."""

    system: System
    outage: threading.Event
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        assert self.system.mx is not None
        targets = [
            ("orchestrator", self.system.replicas[0].url, {"owner": MX}),
            ("microservice-x", self.system.mx.url, {}),
        ]
        clients = [self.system.client(url) for _, url, _ in targets]
        try:
            for turn in range(10_000):
                if self.stop.is_set():
                    return
                via, _, extra = targets[turn % 2]
                body = {"type": "wait", "input": {"seconds": 0.8}, **extra}
                during = self.outage.is_set()
                started = time.monotonic()
                try:
                    resp = clients[turn % 2].post("/jobs", json=body)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{via}: {exc!r} after {time.monotonic() - started:.1f}s")
                    continue
                ok = resp.status_code in (200, 202)
                self.answers.append(
                    Answer(
                        via,
                        resp.status_code,
                        resp.headers.get("content-type", ""),
                        resp.headers.get("retry-after"),
                        time.monotonic() - started,
                        during or self.outage.is_set(),
                        resp.json()["id"] if ok else None,
                    )
                )
                if not ok:
                    time.sleep(0.1)  # what Retry-After asks, shortened
        finally:
            for client in clients:
                client.close()

    def accepted(self) -> list[str]:
        return [a.job_id for a in self.answers if a.job_id is not None]

    def refused_during_outage(self) -> int:
        return sum(1 for a in self.answers if a.during_outage and a.status == 503)


def test_redis_restart_loses_nothing_and_answers_503_meanwhile(system: System) -> None:
    tally = Tally("redis stopped and restarted (append-only)")
    conn = system.redis_client()
    try:
        assert conn.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        conn.close()
    outage = threading.Event()
    submitter = Submitter(system, outage)
    thread = threading.Thread(target=submitter.run, daemon=True)
    orchestrator = system.client(system.replicas[0].url)
    assert system.mx is not None
    mx = system.client(system.mx.url)
    try:
        thread.start()
        wait_until(lambda: len(submitter.accepted()) >= 10, timeout=20)
        # A request long-polling a job that is still running when Redis goes away.
        polled = submitter.accepted()[-1]
        poll = ThreadPoolExecutor(1)
        long_poll = poll.submit(orchestrator.get, f"/jobs/{polled}", params={"wait": LONG_POLL})
        # Stop Redis only once the long-poll is actually waiting (or already answered): a request
        # that arrives during the outage is rightly a 503, which is not what this part checks.
        wait_until(
            lambda: long_poll.done() or _waiting_requests(orchestrator) >= 1,
            timeout=20,
        )
        outage.set()
        system.redis.stop()
        down_at = time.monotonic()
        wait_until(
            lambda: (
                submitter.refused_during_outage() >= 4
                and time.monotonic() - down_at >= OUTAGE_SECONDS
            ),
            timeout=40,
        )
        # Reads during the outage: 503 problems too, on both services.
        some_job = submitter.accepted()[0]
        reads = [orchestrator.get(f"/jobs/{some_job}"), mx.get(f"/jobs/{some_job}")]
        system.redis.restart()
        outage.clear()
        outage_seconds = time.monotonic() - down_at
        back_at = time.monotonic()
        accepted_before = len(submitter.accepted())
        wait_until(lambda: len(submitter.accepted()) >= accepted_before + 10, timeout=40)
        recovery_seconds = time.monotonic() - back_at
        polled_answer = long_poll.result(timeout=LONG_POLL + 20)
    finally:
        submitter.stop.set()
        thread.join(timeout=30)
        poll.shutdown(wait=False, cancel_futures=True)
        orchestrator.close()
        mx.close()
    assert not thread.is_alive()

    accepted = submitter.accepted()
    tally.submitted = len(submitter.answers) + len(submitter.errors)
    tally.accepted = len(accepted)
    tally.refused = sum(1 for a in submitter.answers if a.status == 503)
    with system.client(system.replicas[0].url) as client:
        finals = finals_of(client, accepted, time.monotonic() + 60)
    tally.final = len(finals)
    check_stream(tally, system.stream(), finals)

    def delivered_all() -> bool:
        probe = Tally(tally.fault)
        check_views(probe, system.mx_views(accepted), finals)
        return probe.delivered == len(finals)

    try:
        wait_until(delivered_all, timeout=30, interval=0.5)
    except TimeoutError:
        pass  # counted and reported below
    check_views(tally, system.mx_views(accepted), finals)
    tally.lost += tally.accepted - tally.final
    bad = [a for a in submitter.answers if a.status not in (200, 202, 503)]
    slow = max(a.seconds for a in submitter.answers)
    tally.notes.append(
        f"outage {outage_seconds:.1f}s, recovery {recovery_seconds:.1f}s, slowest answer "
        f"{slow:.1f}s, other answers {[(a.via, a.status) for a in bad]}, "
        f"client errors {submitter.errors[:3]}"
    )
    tally.report()

    assert not submitter.errors, submitter.errors
    assert not bad, bad
    refusals = [a for a in submitter.answers if a.status == 503]
    assert refusals, "no request met the outage"
    for answer in refusals:
        assert answer.content_type == "application/problem+json", answer
        assert answer.retry_after is not None and int(answer.retry_after) > 0, answer
    assert slow < MAX_ANSWER_SECONDS, slow
    # Answered with the job's end, through the outage.
    assert polled_answer.status_code == 200, polled_answer.text
    assert polled_answer.json()["status"] in FINAL, polled_answer.text
    for read in reads:
        assert read.status_code == 503, read.text
        assert read.headers["content-type"] == "application/problem+json"
        assert int(read.headers["retry-after"]) > 0
    assert tally.final == tally.accepted, tally.line()
    assert tally.lost == 0, tally.notes
    assert tally.twice_final == 0, tally.notes
    assert tally.conflicting == 0, tally.notes
    assert tally.delivered == tally.accepted, tally.notes


def _waiting_requests(client: httpx.Client) -> int:
    """How many requests the replica holds waiting, from its /healthz."""
    answer = client.get("/healthz")
    return int(answer.json().get("waitingRequests", 0)) if answer.status_code == 200 else 0
