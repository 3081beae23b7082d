"""microservice-x down (app and sidecar, or only the app) while its jobs run and publish.

Once it is back it has every event of its jobs (each job's whole history, final status
included), and the same events delivered again leave its view exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.faults import (
    TOPIC,
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

JOBS = 30


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with running_system(1) as built:
        yield built


def run_jobs(system: System, count: int) -> dict[str, dict[str, Any]]:
    """Start ``count`` short jobs of microservice-x on the orchestrator; wait for all of them."""
    with system.client(system.replicas[0].url) as client:
        ids = []
        for index in range(count):
            fail = index % 5 == 4  # some end Failed, the rest Completed
            body = {"type": "wait", "input": {"seconds": 0.2, "fail": fail}, "owner": MX}
            resp = client.post("/jobs", json=body)
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        finals = finals_of(client, ids, time.monotonic() + 60)
    assert len(finals) == count, f"{count - len(finals)} jobs not final"
    return finals


def replay(system: System, ids: set[str]) -> int:
    """Publish every event of ``ids`` again, as a broker's redelivery would: same CloudEvents."""
    wanted = [job_id.encode() for job_id in ids]
    entries = [f for f in system.entries() if any(job_id in f[b"data"] for job_id in wanted)]
    conn = system.redis_client()
    try:
        pipe = conn.pipeline()
        for fields in entries:
            pipe.xadd(TOPIC, fields)  # type: ignore[arg-type]
        pipe.execute()
    finally:
        conn.close()
    return len(entries)


def delivered(system: System, finals: dict[str, dict[str, Any]], fault: str) -> Tally:
    """Wait (bounded) until microservice-x shows every job final; the tally either way."""

    def count() -> Tally:
        tally = Tally(fault, submitted=len(finals), accepted=len(finals), final=len(finals))
        check_views(tally, system.mx_views(list(finals)), finals)
        return tally

    started = time.monotonic()
    try:
        wait_until(lambda: count().delivered == len(finals), timeout=40, interval=0.5)
    except TimeoutError:
        pass  # the tally below says what is missing
    tally = count()
    tally.notes.append(f"caught up {time.monotonic() - started:.1f}s after it was back")
    check_stream(tally, system.stream(), finals)
    tally.lost += len(finals) - tally.delivered
    return tally


@pytest.mark.parametrize("what", ["app and sidecar", "app only", "sidecar only"])
def test_events_published_while_microservice_x_is_down_all_arrive(
    system: System, what: str
) -> None:
    assert system.mx is not None and system.mx.proc is not None
    assert system.mx_sidecar is not None and system.mx_sidecar.proc is not None
    if what != "sidecar only":
        system.mx.proc.kill9()
    if what != "app only":
        system.mx_sidecar.proc.kill9()
    finals = run_jobs(system, JOBS)
    replayed = replay(system, set(finals))  # duplicates waiting too
    if what == "app and sidecar":
        system.start_mx()
    elif what == "app only":
        system.mx.start()
    else:
        system.mx_sidecar.start()
    system.mx_sidecar.wait_ready()
    # The stream count of duplicates includes the replayed events.
    tally = delivered(system, finals, f"microservice-x {what} down")
    tally.report()
    assert tally.final == JOBS
    assert tally.lost == 0, tally.notes
    assert tally.delivered == JOBS, tally.notes
    assert tally.twice_final == 0, tally.notes
    assert tally.conflicting == 0, tally.notes
    assert replayed >= 3 * JOBS  # created, claimed, final at least, each published again


def test_duplicates_do_not_change_the_view(system: System) -> None:
    finals = run_jobs(system, 10)
    tally = delivered(system, finals, "duplicate events")
    assert tally.delivered == len(finals), tally.notes
    before = system.mx_views(list(finals))
    tally.duplicates += replay(system, set(finals))
    # A job of ours published after the duplicates: once it shows, they were all delivered.
    marker = run_jobs(system, 1)
    assert delivered(system, marker, "marker").delivered == 1
    after = system.mx_views(list(finals))
    changed = [job_id for job_id in finals if after[job_id] != before[job_id]]
    tally.notes.append(f"views changed by duplicates: {len(changed)}")
    tally.report()
    assert tally.duplicates >= 3 * len(finals)
    assert not changed, [(before[i], after[i]) for i in changed[:1]]
