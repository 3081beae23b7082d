"""The same API on the other state stores: PostgreSQL (query API listing), SQLite (index)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess, serve_inprocess
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
    tmp = tmp_path_factory.mktemp(f"store-{request.param}")
    secrets = None
    if request.param == "postgresql":
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
        yield served


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
