"""state.postgresql v1 specifics: table layout, xmin etags, the query API, expired rows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from sidecar.components import Component, ComponentError
from sidecar.errors import DaprError
from sidecar.state import pgschema
from sidecar.state.base import OutcomeUnknown, SetRequest, StateError, StoreUnavailable
from sidecar.state.postgres import PostgresStateStore
from sidecar.state_service import StateService
from tests.procs import PostgresCluster, free_port
from tests.sidecar.state.conftest import APP_ID

S = "pg"


@pytest.fixture
async def table(postgres_server: PostgresCluster) -> AsyncIterator[tuple[StateService, str]]:
    """A store on its own table, so queries only see this test's rows."""
    name = f"state_{uuid.uuid4().hex[:10]}"
    component = Component(
        S,
        "state.postgresql",
        "v1",
        {"connectionString": postgres_server.dsn, "tableName": name, "cleanupInterval": "0"},
    )
    store = PostgresStateStore(component)
    await store.init()
    yield StateService({S: (store, component)}, APP_ID), name
    await store.close()


async def test_rows_look_like_daprds(
    table: tuple[StateService, str], postgres_server: PostgresCluster
) -> None:
    service, name = table
    await service.save(S, [SetRequest("j", b'{"a":1}', is_json=True)])
    await service.save(S, [SetRequest("b", b"\x00\xff", metadata={"ttlInSeconds": "60"})])
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres")
    try:
        rows = {
            r["key"]: r
            for r in await conn.fetch(
                f"SELECT key, value::text, isbinary, xmin::text AS x, expiredate FROM {name}"
            )
        }
        level = await conn.fetchval("SELECT value FROM dapr_metadata WHERE key = 'migrations'")
    finally:
        await conn.close()
    assert json.loads(rows[f"{APP_ID}||j"]["value"]) == {"a": 1}
    assert rows[f"{APP_ID}||j"]["isbinary"] is False
    assert json.loads(rows[f"{APP_ID}||b"]["value"]) == "AP8="
    assert rows[f"{APP_ID}||b"]["isbinary"] is True and rows[f"{APP_ID}||b"]["expiredate"]
    found = await service.get(S, "j")
    assert found is not None and found.etag == rows[f"{APP_ID}||j"]["x"]
    assert level == "3"


async def seed(service: StateService) -> None:
    docs = {
        "j1": {"status": "done", "n": 1, "data": {"owner": "x"}},
        "j2": {"status": "running", "n": 2, "data": {"owner": "y"}},
        "j3": {"status": "done", "n": 3, "data": {"owner": "y"}},
        "j4": {"status": "failed", "n": 4, "data": {"owner": "z"}},
    }
    await service.save(
        S, [SetRequest(k, json.dumps(v).encode(), is_json=True) for k, v in docs.items()]
    )


def body(query: dict[str, object]) -> bytes:
    """A query as a client sends it: JSON text, which the service decodes."""
    return json.dumps(query).encode()


async def keys_of(service: StateService, query: dict[str, object]) -> list[str]:
    return [r.key for r in (await service.query(S, body(query))).results]


async def test_query_filters(table: tuple[StateService, str]) -> None:
    service, _ = table
    await seed(service)
    by_key = {"sort": [{"key": "n"}]}
    assert await keys_of(service, {"filter": {"EQ": {"status": "done"}}, **by_key}) == ["j1", "j3"]
    assert await keys_of(service, {"filter": {"EQ": {"data.owner": "y"}}, **by_key}) == [
        "j2",
        "j3",
    ]
    assert await keys_of(service, {"filter": {"NEQ": {"status": "done"}}, **by_key}) == [
        "j2",
        "j4",
    ]
    assert await keys_of(service, {"filter": {"IN": {"n": [1, 4]}}, **by_key}) == ["j1", "j4"]
    assert await keys_of(service, {"filter": {"GT": {"n": 2}}, **by_key}) == ["j3", "j4"]
    assert await keys_of(service, {"filter": {"LTE": {"n": 2}}, **by_key}) == ["j1", "j2"]
    both = {
        "OR": [
            {"AND": [{"EQ": {"status": "done"}}, {"EQ": {"data.owner": "y"}}]},
            {"EQ": {"status": "failed"}},
        ]
    }
    assert await keys_of(service, {"filter": both, **by_key}) == ["j3", "j4"]
    result = await service.query(S, body({"filter": {"EQ": {"data.owner": "x"}}}))
    assert result.results[0].etag and json.loads(result.results[0].data)["n"] == 1


async def test_query_sort_and_paging(table: tuple[StateService, str]) -> None:
    service, _ = table
    await seed(service)
    query: dict[str, object] = {"sort": [{"key": "n", "order": "DESC"}], "page": {"limit": 3}}
    first = await service.query(S, body(query))
    assert [r.key for r in first.results] == ["j4", "j3", "j2"] and first.token == "3"
    second = await service.query(S, body({**query, "page": {"limit": 3, "token": first.token}}))
    assert [r.key for r in second.results] == ["j1"] and second.token == "4"
    third = await service.query(S, body({**query, "page": {"limit": 3, "token": second.token}}))
    assert third.results == [] and third.token == ""


async def test_query_without_match_and_bad_queries(table: tuple[StateService, str]) -> None:
    service, _ = table
    await seed(service)
    empty = await service.query(S, body({"filter": {"EQ": {"status": "nope"}}}))
    assert empty.results == [] and empty.token == ""
    for bad in ({"filter": {"GT": {"n": "2"}}}, {"page": {"limit": 1, "token": "x"}}):
        with pytest.raises(DaprError) as exc:
            await service.query(S, body(bad))
        assert (exc.value.error_code, exc.value.reason) == (
            "ERR_STATE_QUERY",
            "DAPR_STATE_QUERY_FAILED",
        )
        assert exc.value.message.startswith(f"state store {S} query failed: ")


async def test_etag_out_of_xid_range_is_malformed(table: tuple[StateService, str]) -> None:
    service, _ = table
    with pytest.raises(DaprError) as exc:
        await service.save(S, [SetRequest("e", b"1", etag="99999999999")])
    assert exc.value.http_status == 400 and "value out of range" in exc.value.message


async def test_init_fails_clearly_without_server() -> None:
    component = Component(
        S, "state.postgresql", "v1", {"connectionString": f"host=127.0.0.1 port={free_port()}"}
    )
    store = PostgresStateStore(component)
    with pytest.raises(ComponentError) as exc:
        await store.init()
    assert exc.value.field_name == "connectionString"
    await store.close()


async def test_url_connection_string_and_cleanup(postgres_server: PostgresCluster) -> None:
    name = f"state_{uuid.uuid4().hex[:10]}"
    url = f"postgres://postgres@127.0.0.1:{postgres_server.port}/postgres"
    component = Component(
        S,
        "state.postgresql",
        "v1",
        {"connectionString": url, "tableName": name, "metadataTableName": f"{name}_meta"},
    )
    store = PostgresStateStore(component)
    await store.init()
    try:
        service = StateService({S: (store, component)}, APP_ID)
        await service.save(S, [SetRequest("gone", b"1", metadata={"ttlInSeconds": "1"})])
        async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
            await pool.execute(f"UPDATE {name} SET expiredate = now() - interval '1 hour'")
            deleted = await pgschema.collect_expired(pool, name, f"{name}_meta", 3600)
            assert deleted == 1
            # Another sidecar within the interval does not delete again.
            assert await pgschema.collect_expired(pool, name, f"{name}_meta", 3600) == 0
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("when", "outcome"),
    [("DEFERRABLE INITIALLY DEFERRED", OutcomeUnknown), ("", StoreUnavailable)],
    ids=["lost-during-commit", "lost-before-commit"],
)
async def test_connection_lost_mid_transaction(
    table: tuple[StateService, str],
    postgres_server: PostgresCluster,
    when: str,
    outcome: type[StateError],
) -> None:
    """A connection cut during COMMIT leaves the outcome unknown (the outbox then keeps its
    markers and its relays decide); cut before COMMIT, the server rolls back: unavailable."""
    service, name = table
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres")
    try:
        # A trigger that sleeps, at COMMIT when deferred, else at the INSERT itself.
        await conn.execute(
            f"CREATE FUNCTION {name}_slow() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$"
        )
        await conn.execute(
            f"CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON {name} {when} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}_slow()"
        )
        writing = asyncio.create_task(
            service.transact(S, [SetRequest("a", b"1"), SetRequest("b", b"2")])
        )
        step = "COMMIT%" if when else "INSERT%"
        for _ in range(200):
            pid = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE $1",
                step,
            )
            if pid is not None:
                break
            await asyncio.sleep(0.025)
        assert pid is not None, f"the transaction never reached {step}"
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(DaprError) as exc:
            await asyncio.wait_for(writing, 10)
        assert type(exc.value.__cause__) is outcome
    finally:
        await conn.close()
