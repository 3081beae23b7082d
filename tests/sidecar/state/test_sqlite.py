"""state.sqlite specifics: the table daprd uses, a file shared by sidecars, in-memory DBs."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.components import Component, ComponentError
from sidecar.state.base import DeleteRequest, SetRequest
from sidecar.state.sqlite import SqliteStateStore
from sidecar.state_service import StateService
from tests.sidecar.state.conftest import APP_ID

S = "lite"
#: Takes the database's write lock, as a second sidecar's write does, and holds it until killed.
HOLD_WRITE_LOCK = (
    "import sqlite3, sys, time\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "db.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


def component(connection: str, **extra: str) -> Component:
    return Component(S, "state.sqlite", "v1", {"connectionString": connection, **extra})


async def test_table_layout(tmp_path: Path) -> None:
    comp = component(str(tmp_path / "s.db"), tableName="jobs")
    store = SqliteStateStore(comp)
    await store.init()
    service = StateService({S: (store, comp)}, APP_ID)
    try:
        await service.save(S, [SetRequest("j", b'{"a":1}', is_json=True)])
        await service.save(S, [SetRequest("b", b"\x00\x01", metadata={"ttlInSeconds": "60"})])
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "s.db")) as db:
        rows = {r[0]: r for r in db.execute("SELECT * FROM jobs")}
        columns = [c[1] for c in db.execute("PRAGMA table_info(jobs)")]
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        level = db.execute("SELECT value FROM metadata WHERE key = 'migrations'").fetchone()[0]
    assert columns == ["key", "value", "is_binary", "etag", "expiration_time", "update_time"]
    assert rows[f"{APP_ID}||j"][1:3] == ('{"a":1}', 0)
    assert rows[f"{APP_ID}||b"][1:3] == ("AAE=", 1) and rows[f"{APP_ID}||b"][4]
    assert journal == "wal" and level == "1"


async def test_two_sidecars_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    comps = [component(f"file:{path}"), component(str(path))]
    stores = [SqliteStateStore(c) for c in comps]
    await asyncio.gather(*(s.init() for s in stores))
    services = [StateService({S: (s, c)}, APP_ID) for s, c in zip(stores, comps, strict=True)]
    try:
        await services[0].save(S, [SetRequest("k", b'"one"', is_json=True)])
        found = await services[1].get(S, "k")
        assert found is not None and found.data == b'"one"'

        async def bump(service: StateService, n: int) -> None:
            for i in range(n):
                await service.transact(S, [SetRequest(f"c{i}", b"1"), SetRequest("k", b"2")])

        await asyncio.gather(bump(services[0], 20), bump(services[1], 20))
        assert len(await services[0].bulk_get(S, [f"c{i}" for i in range(20)])) == 20
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_in_memory_database() -> None:
    comp = component(":memory:")
    store = SqliteStateStore(comp)
    await store.init()
    try:
        service = StateService({S: (store, comp)}, APP_ID)
        await service.save(S, [SetRequest("k", b"v")])
        found = await service.get(S, "k")
        assert found is not None and found.data == b"v"
    finally:
        await store.close()


async def test_expired_rows_are_cleaned_up(tmp_path: Path) -> None:
    comp = component(str(tmp_path / "gc.db"), cleanupInterval="200ms")
    store = SqliteStateStore(comp)
    await store.init()
    try:
        service = StateService({S: (store, comp)}, APP_ID)
        await service.save(S, [SetRequest("gone", b"1", metadata={"ttlInSeconds": "1"})])
        with contextlib.closing(sqlite3.connect(tmp_path / "gc.db")) as db, db:
            db.execute("UPDATE state SET expiration_time = '2000-01-01 00:00:00'")
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            with contextlib.closing(sqlite3.connect(tmp_path / "gc.db")) as db:
                if db.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 0:
                    break
            assert asyncio.get_running_loop().time() < deadline, "expired row not collected"
            await asyncio.sleep(0.1)
    finally:
        await store.close()


@pytest.mark.parametrize(
    "extra",
    [{"connectionString": "x.db?_pragma=busy_timeout(10)"}, {"busyTimeout": "fast"}],
)
def test_refused_settings(extra: dict[str, str]) -> None:
    with pytest.raises(ComponentError):
        SqliteStateStore(Component(S, "state.sqlite", "v1", {"connectionString": "x.db", **extra}))


async def test_unopenable_file_is_a_component_error(tmp_path: Path) -> None:
    store = SqliteStateStore(component(str(tmp_path / "missing-dir" / "s.db")))
    with pytest.raises(ComponentError) as exc:
        await store.init()
    assert exc.value.field_name == "connectionString"
    await store.close()


@contextlib.asynccontextmanager
async def write_locked(path: Path) -> AsyncIterator[None]:
    """Another process holds ``path``'s write lock inside the block."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_WRITE_LOCK,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 20)
        assert line == b"locked\n", f"lock holder exited with {await holder.wait()}"
        yield
    finally:
        holder.kill()
        await holder.wait()


async def test_reads_do_not_wait_behind_a_write_held_up_by_another_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    store = SqliteStateStore(component(str(path), busyTimeout="30s"))
    await store.init()
    await store.set(SetRequest("k", b'"old"', is_json=True))
    write: asyncio.Task[None] | None = None
    try:
        async with write_locked(path):
            write = asyncio.create_task(store.set(SetRequest("k", b'"new"', is_json=True)))
            await asyncio.sleep(0)  # the write is handed to the store and waits for the lock
            # 10 s is only a bound: behind the write, the read would wait out its 30 s.
            found = await asyncio.wait_for(store.get("k"), 10)
            (item,) = await asyncio.wait_for(store.bulk_get(["k"]), 10)
            assert not write.done(), "the read waited for the write"
            assert found is not None and found.data == b'"old"'
            assert item.response is not None and item.response.data == b'"old"'
        await asyncio.wait_for(write, 20)
        found = await store.get("k")
        assert found is not None and found.data == b'"new"'
    finally:
        if write is not None:
            await asyncio.gather(write, return_exceptions=True)
        await store.close()


@pytest.mark.parametrize("extra", [{}, {"disableWAL": "true"}], ids=["wal", "no-wal"])
async def test_a_read_sees_the_writes_before_it(tmp_path: Path, extra: dict[str, str]) -> None:
    store = SqliteStateStore(component(str(tmp_path / "s.db"), **extra))
    await store.init()
    try:
        for i in range(20):
            await store.set(SetRequest("k", str(i).encode(), is_json=True))
            found = await store.get("k")
            assert found is not None and found.data == str(i).encode()
            await store.transact([SetRequest("k", b"-1", is_json=True), SetRequest("o", b"x")])
            items = await store.bulk_get(["k", "o"])
            assert [it.response.data if it.response else None for it in items] == [b"-1", b"x"]
            await store.delete(DeleteRequest("o"))
            assert await store.get("o") is None
    finally:
        await store.close()
