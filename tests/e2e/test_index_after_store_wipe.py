"""GET /jobs on the index stores (Redis, SQLite) lists the jobs created after the store came back
empty: a Redis restarted without its data, an SQLite file lost with its sidecar.

The replica had already registered its part of the current minute in the day's directory, which
the wipe took; the jobs created next go into that same part. Before, the replica rewrote the part
but never named it again, so no listing found those jobs, even after the app restarted.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, log_dir_for, write_components
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

JOBS_BEFORE = 3
JOBS_AFTER = 5
#: The index confirms its parts' names every few seconds and flushes about once a second.
LISTED_WITHIN = 20.0


def _empty(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@pytest.fixture(params=["redis", "sqlite"])
def wiped_replica(
    request: pytest.FixtureRequest, own_redis: RedisServer, tmp_path: Path
) -> Iterator[tuple[Replica, Callable[[], None]]]:
    """One replica on a store of its own, and how to wipe that store under it."""
    topic = f"job-events-{uuid.uuid4().hex[:8]}"
    database = tmp_path / "sqlite" / "state.db"
    state = None
    if request.param == "sqlite":
        database.parent.mkdir()
        state = ("state.sqlite", [{"name": "connectionString", "value": str(database)}])
    resources = write_components(tmp_path / "resources", own_redis.host, topic, state=state)
    logs = log_dir_for(tmp_path)
    replica = Replica(f"wipe-{request.param}")

    def wipe_redis() -> None:
        own_redis.kill9()
        _empty(own_redis.data_dir)
        own_redis.restart()

    def wipe_sqlite() -> None:
        # The sidecar holds the file open: it goes with the file (as a pod's would).
        assert replica.sidecar is not None
        replica.sidecar.kill9()
        _empty(database.parent)
        replica.start_sidecar(resources, logs)

    try:
        replica.start_sidecar(resources, logs)
        replica.start_app(topic, logs)
        yield replica, wipe_redis if request.param == "redis" else wipe_sqlite
    finally:
        replica.stop()


def _create(client: httpx.Client, owner: str) -> dict[str, str]:
    made = client.post("/jobs", json={"input": {"seconds": 0.05}, "owner": owner})
    assert made.status_code == 202, made.text
    job: dict[str, str] = made.json()
    return job


def _listed(client: httpx.Client, owner: str) -> set[str]:
    page = client.get("/jobs", params={"owner": owner, "limit": 100})
    assert page.status_code == 200, page.text
    return {job["id"] for job in page.json()["items"]}


def _minute(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y%m%d%H%M")


def _start_early_in_a_minute() -> None:
    """Everything up to the jobs after the wipe then happens within one UTC minute, so they go
    into the part the replica registered before the wipe (a new minute's part is registered
    anew, which is what hid the problem)."""
    second = time.time() % 60
    if second > 25:
        time.sleep(60.5 - second)


@pytest.mark.timeout(180)
def test_jobs_created_after_the_store_came_back_empty_are_listed(
    wiped_replica: tuple[Replica, Callable[[], None]],
) -> None:
    replica, wipe = wiped_replica
    owner = f"wiped-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        _start_early_in_a_minute()
        before = [_create(client, owner) for _ in range(JOBS_BEFORE)]
        wanted = {job["id"] for job in before}
        wait_until(lambda: _listed(client, owner) == wanted, timeout=LISTED_WITHIN)

        wipe()
        after: list[dict[str, str]] = []

        def created() -> bool:
            try:
                after.append(_create(client, owner))
            except (AssertionError, httpx.HTTPError):
                return False  # the replica's sidecar is still reconnecting
            return True

        wait_until(created, timeout=30, interval=0.2)
        after += [_create(client, owner) for _ in range(JOBS_AFTER - 1)]
        same_minute = {_minute(job["createdAt"]) for job in before + after}
        assert len(same_minute) == 1, f"the test spilled into another minute: {same_minute}"

        wanted = {job["id"] for job in after}  # the jobs from before the wipe are gone
        wait_until(lambda: _listed(client, owner) == wanted, timeout=LISTED_WITHIN, interval=0.5)
