"""The same API on the other state stores: PostgreSQL (query API listing), SQLite (index)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from job_orchestrator.jobs import new_job
from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess, serve_inprocess
from tests.job_orchestrator.test_metrics import scrape, value
from tests.job_orchestrator.test_store_batching import check_outcomes, conflicting_batch, open_store
from tests.procs import PostgresCluster, wait_until

# The SDK warns on every query_state call that the query API is alpha (raised in the app).
pytestmark = pytest.mark.filterwarnings("ignore:The State Store Query API:UserWarning")


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def other_store(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InProcess]:
    with serve_on(request.param, request, redis_server, tmp_path_factory) as (served, _):
        yield served


@pytest.fixture(scope="module")
def postgres_store(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InProcess]:
    with serve_on("postgresql", request, redis_server, tmp_path_factory) as (served, _):
        yield served


@pytest.fixture(scope="module")
def sqlite_store(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[InProcess, Path]]:
    with serve_on("sqlite", request, redis_server, tmp_path_factory) as (served, folder):
        yield served, folder / "state.db"


@contextmanager
def serve_on(
    kind: str,
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[InProcess, Path]]:
    """The app served in-process on a ``kind`` store, and its folder (SQLite: ``state.db``)."""
    tmp = tmp_path_factory.mktemp(f"store-{kind}")
    secrets = None
    if kind == "postgresql":
        pg: PostgresCluster = request.getfixturevalue("postgres_server")
        table = f"state_{uuid.uuid4().hex[:8]}"
        # The connection string from a secrets file, as a deployment keeps it out of the YAML.
        secrets = {"pgConnection": pg.dsn}
        meta: list[dict[str, Any]] = [
            {"name": "connectionString", "secretKeyRef": {"name": "pgConnection"}},
            {"name": "tableName", "value": table},
        ]
        state = ("state.postgresql", meta)
    else:
        state = ("state.sqlite", [{"name": "connectionString", "value": str(tmp / "state.db")}])
    with serve_inprocess(redis_server.host, tmp, state=state, secrets=secrets) as served:
        yield served, tmp


def test_jobs_run_and_list_on_other_stores(other_store: InProcess) -> None:
    client = other_store.client
    owner = f"owner-{uuid.uuid4().hex[:6]}"
    ids = []
    for seconds in (0, 0, 0.1):
        resp = client.post(
            "/Jobs/StartJobWithTimeout", json={"input": {"seconds": seconds}, "owner": owner}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "Completed"
        ids.append(resp.json()["id"])

    def listed(**params: Any) -> dict[str, Any]:
        resp = client.get("/jobs", params={"owner": owner, **params})
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    wait_until(lambda: len(listed(limit=10)["items"]) == 3, timeout=10)
    first = listed(limit=2)
    second = listed(limit=2, cursor=first["nextCursor"])
    assert [j["id"] for j in first["items"] + second["items"]] == list(reversed(ids))
    assert listed(status="Failed")["items"] == []
    assert len(listed(status="Completed")["items"]) == 3

    assert client.delete(f"/jobs/{ids[0]}").status_code == 204
    assert client.get(f"/jobs/{ids[0]}").status_code == 404
    wait_until(lambda: len(listed(limit=10)["items"]) == 2, timeout=10)


async def test_a_batch_with_a_stale_etag_fails_alone_on_atomic_stores(
    other_store: InProcess,
) -> None:
    """The store rolls the whole batch back; each write is then settled as if alone."""
    store = await open_store(other_store)
    try:
        done, outcomes = await conflicting_batch(store)
        await check_outcomes(store, done, outcomes)
    finally:
        await store.close()


def save_rows(served: InProcess, items: list[dict[str, Any]]) -> None:
    """Rows saved through the orchestrator's own sidecar, as any app sharing the store could."""
    url = f"http://127.0.0.1:{served.replica.http_port}/v1.0/state/statestore"
    saved = httpx.post(url, json=items)
    assert saved.status_code == 204, saved.text


def job_row(owner: str, created_at: float, **metadata: str) -> dict[str, Any]:
    job = new_job(
        str(uuid.uuid4()),
        "wait",
        {},
        owner=owner,
        max_attempts=1,
        run_timeout_seconds=None,
        now=created_at,
    )
    return {"key": f"job-{job.id}", "value": job.to_record(), "metadata": metadata}


def pages(
    served: InProcess, owner: str, limit: int, between: Callable[[], object] = lambda: None
) -> list[list[str]]:
    """The ids of every listing page for ``owner``, following the cursors to the end;
    ``between`` runs after each page that has a next one."""
    found: list[list[str]] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"owner": owner, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = served.client.get("/jobs", params=params)
        assert page.status_code == 200, page.text
        found.append([job["id"] for job in page.json()["items"]])
        cursor = page.json()["nextCursor"]
        if cursor is None:
            return found
        between()
    raise AssertionError("the cursors never ended")


def walk(served: InProcess, owner: str, limit: int) -> list[str]:
    """Every id the listing pages give for ``owner``, in order."""
    return [job_id for page in pages(served, owner, limit) for job_id in page]


def test_jobs_created_in_one_millisecond_are_each_listed_once(postgres_store: InProcess) -> None:
    """Page tokens are offsets on state.postgresql: without a tie-breaker in the sort, rows of
    one createdAt come back in no fixed order, and pages skip some and repeat others."""
    owner = f"ties-{uuid.uuid4().hex[:6]}"
    created_at = time.time() - 60
    rows = [job_row(owner, created_at) for _ in range(40)]
    save_rows(postgres_store, rows)
    expected = sorted(row["value"]["id"] for row in rows)
    for limit in (3, 7, 40):
        listed = walk(postgres_store, owner, limit)
        assert sorted(listed) == expected, f"limit {limit}: skipped or repeated"
        assert listed == expected, f"limit {limit}: ties in id order"


def test_jobs_created_while_a_client_pages_push_no_listed_job_into_the_next_page(
    postgres_store: InProcess,
) -> None:
    """Page tokens are offsets on state.postgresql: each job created between two pages pushed
    one already listed into the next page. Rows the pages have reached are left out."""
    owner = f"busy-{uuid.uuid4().hex[:6]}"
    rows = [job_row(owner, time.time() - 60 + n / 1000) for n in range(12)]
    save_rows(postgres_store, rows)

    def create_two() -> None:
        save_rows(postgres_store, [job_row(owner, time.time()) for _ in range(2)])

    listed = [i for page in pages(postgres_store, owner, 3, between=create_two) for i in page]
    # Every job that existed when the listing began, once each, newest first; the ones
    # created meanwhile are newer than the first page, so no page shows them.
    assert listed == [row["value"]["id"] for row in reversed(rows)]


def sidecar_calls(served: InProcess) -> float:
    return value(scrape(served), "job_orchestrator_sidecar_calls_total")


def test_a_page_costs_one_query_and_the_last_page_says_it_is_the_last(
    postgres_store: InProcess,
) -> None:
    """Each query scans the table on PostgreSQL (page tokens are offsets). A page asks one row
    more than it shows, instead of a second query to learn whether another page follows: a
    page is one query and one bulk read of the jobs' records."""
    owner = f"pages-{uuid.uuid4().hex[:6]}"
    rows = [job_row(owner, time.time() - 60 + n / 1000) for n in range(30)]
    save_rows(postgres_store, rows)
    newest_first = [row["value"]["id"] for row in reversed(rows)]

    before = sidecar_calls(postgres_store)
    walked = pages(postgres_store, owner, 3)
    calls = sidecar_calls(postgres_store) - before
    # Ten full pages, the tenth saying it is the last (no empty eleventh page).
    assert walked == [newest_first[n : n + 3] for n in range(0, 30, 3)]
    # Two calls a page, 30 with the second query; a few more are the replica's own background
    # calls (its ledger's heartbeat) that fell inside the walk.
    assert 20 <= calls < 25, calls
    whole = postgres_store.client.get("/jobs", params={"owner": owner, "limit": 30})
    assert [job["id"] for job in whole.json()["items"]] == newest_first
    assert whole.json()["nextCursor"] is None


def test_a_page_of_jobs_larger_than_one_sidecar_message_is_listed_in_parts(
    postgres_store: InProcess,
) -> None:
    """Forty completed jobs with results near MAX_RESULT_BYTES are 10 MB of query answer, more
    than the sidecar sends in one message (4 MiB): the page is shortened until it fits, and its
    cursor goes on, so every job is listed once. Before, the listing answered 503 for good."""
    owner = f"large-{uuid.uuid4().hex[:6]}"
    rows = [job_row(owner, time.time() - 60 + n / 1000) for n in range(40)]
    for row in rows:
        row["value"] |= {"status": "Completed", "result": {"text": "r" * 250_000}}
    for first in range(0, len(rows), 8):  # the save request within the sidecar's body limit
        save_rows(postgres_store, rows[first : first + 8])
    newest_first = [row["value"]["id"] for row in reversed(rows)]
    page = postgres_store.client.get("/jobs", params={"owner": owner, "limit": 40})
    assert page.status_code == 200, page.text[:300]
    assert 0 < len(page.json()["items"]) < 40
    assert page.json()["nextCursor"] is not None
    assert walk(postgres_store, owner, 40) == newest_first


def test_the_query_listing_shows_only_this_apps_live_jobs(postgres_store: InProcess) -> None:
    """The query runs over the whole table: rows of other apps sharing it (anything with
    "kind": "job", even a whole forged job) and rows past their TTL are not listed, and a
    row that is no job record does not fail the listing."""
    owner = f"victim-{uuid.uuid4().hex[:6]}"
    created = postgres_store.client.post(
        "/Jobs/StartJobWithTimeout", json={"input": {"seconds": 0}, "owner": owner}
    )
    assert created.status_code == 200, created.text
    forged = job_row(owner, time.time())
    forged["value"] = {**forged["value"], "status": "Completed", "result": {"forged": True}}
    expiring = job_row(owner, time.time(), ttlInSeconds="1")
    save_rows(
        postgres_store,
        [
            {"key": "another-apps-doc", "value": {"kind": "job", "owner": owner}},
            {"key": f"another-apps-{forged['key']}", "value": forged["value"]},
            expiring,
        ],
    )
    time.sleep(2.5)  # past the TTL; PostgreSQL's cleanup runs hourly, so the row is still there
    assert postgres_store.client.get(f"/jobs/{expiring['value']['id']}").status_code == 404
    page = postgres_store.client.get("/jobs", params={"owner": owner})
    assert page.status_code == 200, page.text
    assert [job["id"] for job in page.json()["items"]] == [created.json()["id"]]
    assert page.json()["nextCursor"] is None
    assert walk(postgres_store, owner, 1) == [created.json()["id"]]


#: Holds SQLite's write lock on a file, as another process writing to it would, until killed.
LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
"""


def test_a_store_that_does_not_answer_is_a_503_within_the_documented_10_s(
    sqlite_store: tuple[InProcess, Path],
) -> None:
    """Requests queued behind a call in flight waited for it and then for their own call
    (28 s seen): each is told 10 s, so it answers 503 with Retry-After by then."""
    served, database = sqlite_store
    owner = f"locked-{uuid.uuid4().hex[:6]}"
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(database)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"

        def submit(_: int) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            with httpx.Client(base_url=str(served.client.base_url), timeout=60) as client:
                answer = client.post("/jobs", json={"input": {"seconds": 0}, "owner": owner})
            return answer, time.monotonic() - started

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(submit, range(4)))
    finally:
        locker.kill()
        locker.wait(timeout=10)
    for answer, took in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"]
        # The bound is 10 s plus the response; the old wait was two or three times that.
        assert took < 16, f"answered after {took:.1f} s"
