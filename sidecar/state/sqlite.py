"""``state.sqlite``: a table ``key, value, is_binary, etag, expiration_time, update_time``.

Statements and etag semantics follow components-contrib state/sqlite (uuid etag per
write, TTL as an expiration time, first-write as insert-if-absent), so daprd and this
sidecar can share a database file; WAL and a busy timeout let several sidecars share it.

Writes run on one connection in one thread, so this process's writes never wait on each
other. On a WAL file reads run on a second connection and thread: a write waiting out the
busy timeout behind another process's lock does not hold them up, as with contrib's pool.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sidecar import go_values
from sidecar.components import Component, ComponentError
from sidecar.state.base import (
    BulkGetItem,
    Concurrency,
    DeleteRequest,
    GetResponse,
    InvalidRequest,
    SetRequest,
    StateError,
)
from sidecar.state.metadata import (
    TTL_EXPIRE_TIME,
    check_options,
    etag_mismatch,
    parse_duration,
    parse_ttl,
)
from sidecar.state.sqlite_thread import SqliteThread

logger = logging.getLogger(__name__)
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")
_LIVE = "(expiration_time IS NULL OR expiration_time > CURRENT_TIMESTAMP)"
#: Pragmas contrib refuses in the connection string because metadata fields own them.
_FORBIDDEN_PRAGMAS = ("busy_timeout", "journal_mode", "foreign_keys")


def _uri(component: Component) -> tuple[str, list[str], bool]:
    """(sqlite URI, extra PRAGMA statements, in-memory?) from ``connectionString``."""
    raw = component.require("connectionString", 'e.g. value: "data.db" or "file:data.db"')
    memory = raw.lower().startswith((":memory:", "file::memory:"))
    base, _, query = raw.partition("?")
    if not base.startswith("file:"):
        base = "file:" + base
    params, pragmas = [], []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name != "_pragma":
            params.append((name, value))
            continue
        if value.lower().startswith(_FORBIDDEN_PRAGMAS):
            raise ComponentError(
                component,
                "connectionString",
                f"found forbidden option '_pragma={value}' in the connection string; "
                "use the busyTimeout / disableWAL metadata fields instead",
            )
        pragmas.append("PRAGMA " + re.sub(r"\((.*)\)$", r"=\1", value))
    return (base + ("?" + urlencode(params) if params else "")), pragmas, memory


def _encode(request: SetRequest) -> tuple[str, bool]:
    if request.is_json:
        return request.value.decode(), False
    return base64.b64encode(request.value).decode(), True


def _expiry(request: SetRequest) -> str | None:
    """DATETIME() modifier for the TTL; NULL makes DATETIME return NULL (no expiry)."""
    try:
        ttl = parse_ttl(request.metadata)
    except InvalidRequest as exc:
        raise InvalidRequest(f"error parsing TTL: {exc}") from None
    return f"+{ttl} seconds" if ttl and ttl > 0 else None


def _checked_expiry(request: SetRequest | DeleteRequest) -> str | None:
    """Contrib's doSet/doDelete checks: the options, then (for a set) the TTL."""
    check_options(request.concurrency, request.consistency)
    return _expiry(request) if isinstance(request, SetRequest) else None


def _fetch(db: sqlite3.Connection, sql: str, params: tuple[str, ...]) -> list[Any]:
    """Every row: a statement run to its end is reset, which ends its read transaction."""
    return db.execute(sql, params).fetchall()


def _response(row: Sequence[Any]) -> GetResponse:
    value, is_binary, etag, expires = row
    try:
        data = base64.b64decode(value, validate=True) if is_binary else str(value).encode()
    except ValueError as exc:
        raise StateError(f"failed to decode binary data: {exc}") from None
    meta = {TTL_EXPIRE_TIME: str(expires).replace(" ", "T") + "Z"} if expires else {}
    return GetResponse(data, etag, meta)


class SqliteStateStore:
    capabilities = ("ETAG", "TRANSACTIONAL", "TTL", "KEYS_LIKE", "ACTOR")
    features = frozenset(capabilities)
    marshal = staticmethod(go_values.encoding_json)

    def __init__(self, component: Component) -> None:
        self.name = component.name
        self._component = component
        self._uri, self._pragmas, self._memory = _uri(component)
        self.table = component.metadata.get("tableName", "") or "state"
        self._metadata_table = component.metadata.get("metadataTableName", "") or "metadata"
        for key, value in (("tableName", self.table), ("metadataTableName", self._metadata_table)):
            if not _IDENTIFIER.fullmatch(value):
                raise ComponentError(component, key, f"invalid identifier: {value}")
        if parse_duration(component, "timeout", 20.0, "timeoutInSeconds") < 1:
            raise ComponentError(component, "timeout", "must be at least 1s")
        self._busy_ms = int(parse_duration(component, "busyTimeout", 2.0) * 1000)
        self._wal = not component.get_bool("disableWAL", False) and not self._memory
        # Contrib's sqlite store does not collect expired rows unless asked (expired = missing).
        self._cleanup = parse_duration(
            component, "cleanupInterval", 0.0, "cleanupIntervalInSeconds"
        )
        self._writer = SqliteThread(self.name, f"sqlite-{self.name}")
        # In-memory and rollback-journal databases keep one connection: contrib gives an
        # in-memory database one, and without WAL a reader would wait on the writer anyway.
        self._reader = (
            SqliteThread(self.name, f"sqlite-{self.name}-read") if self._wal else self._writer
        )
        self._gc: asyncio.Task[None] | None = None
        t = self.table
        self._get = (
            f"SELECT value, is_binary, etag, expiration_time FROM {t} WHERE key = ? AND {_LIVE}"
        )
        self._replace = (
            f"INSERT OR REPLACE INTO {t} (key, value, is_binary, etag, update_time,"
            " expiration_time)"
            " VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP, DATETIME(CURRENT_TIMESTAMP, ?))"
        )
        # first-write without etag: insert unless a live row exists (an expired one is replaced).
        self._insert_only = (
            "WITH a AS (SELECT ?, ?, ?, ?, DATETIME(CURRENT_TIMESTAMP, ?), CURRENT_TIMESTAMP"
            f" WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE key = ? AND {_LIVE}))"
            f" INSERT OR REPLACE INTO {t} (key, value, is_binary, etag, expiration_time,"
            " update_time) SELECT * FROM a RETURNING 1"
        )
        self._update = (
            f"UPDATE {t} SET value = ?, etag = ?, is_binary = ?, update_time = CURRENT_TIMESTAMP,"
            " expiration_time = DATETIME(CURRENT_TIMESTAMP, ?)"
            f" WHERE key = ? AND etag = ? AND {_LIVE}"
        )

    async def init(self) -> None:
        try:
            await self._writer.open(lambda: self._open(self._set_up_writer))
            if self._reader is not self._writer:
                # After the writer: the file is in WAL mode and migrated by then.
                await self._reader.open(lambda: self._open(self._set_up_reader))
        except StateError as exc:
            raise ComponentError(
                self._component, "connectionString", f"cannot open {self._uri}: {exc}"
            ) from exc
        if self._cleanup > 0:
            self._gc = asyncio.create_task(self._collect(), name=f"{self.name}-gc")

    def _open(self, setup: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
        # Switching a new file to WAL, or its first migration, can answer "database is locked"
        # without SQLite's busy handler being consulted when several sidecars open the same file
        # at once; such an open is retried until the busy timeout (at least 5 s) runs out.
        deadline = time.monotonic() + max(self._busy_ms / 1000, 5.0)
        pause = 0.01
        while True:
            try:
                return self._connect(setup)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _connect(self, setup: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
        # Autocommit: a read transaction ends with its statement, so a read sees every write
        # committed before it started.
        conn = sqlite3.connect(
            self._uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_ms / 1000,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            setup(conn)
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _set_up_writer(self, conn: sqlite3.Connection) -> None:
        journal = "WAL" if self._wal else "MEMORY" if self._memory else "DELETE"
        conn.execute(f"PRAGMA journal_mode = {journal}")
        if self._wal:
            # WAL + NORMAL survives process crashes (only a power loss can drop the last
            # commits) and saves an fsync per write.
            conn.execute("PRAGMA synchronous = NORMAL")
        for pragma in self._pragmas:
            conn.execute(pragma)
        self._migrate(conn)

    def _set_up_reader(self, conn: sqlite3.Connection) -> None:
        for pragma in self._pragmas:
            conn.execute(pragma)
        conn.execute("PRAGMA query_only = ON")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Contrib's migration 0 under an exclusive lock, recorded as level 1."""
        conn.execute("BEGIN EXCLUSIVE TRANSACTION")  # failing here leaves nothing to roll back
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._metadata_table}"
                " (key text NOT NULL PRIMARY KEY, value text NOT NULL)"
            )
            row = conn.execute(
                f"SELECT value FROM {self._metadata_table} WHERE key = 'migrations'"
            ).fetchone()
            if row is None or int(row[0]) < 1:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT NOT NULL PRIMARY KEY,"
                    " value TEXT NOT NULL, is_binary BOOLEAN NOT NULL, etag TEXT NOT NULL,"
                    " expiration_time TIMESTAMP DEFAULT NULL,"
                    " update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
                )
                conn.execute(
                    f"REPLACE INTO {self._metadata_table} (key, value) VALUES ('migrations', '1')"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._gc is not None:
            self._gc.cancel()
            await asyncio.gather(self._gc, return_exceptions=True)
        # The writer closes last, so it is the one to checkpoint the WAL and remove it.
        if self._reader is not self._writer:
            await self._reader.close()
        await self._writer.close()

    async def _collect(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup)
            try:
                await self._writer.run(self._collect_once)
            except StateError as exc:
                logger.warning("state store %s: expired-row cleanup failed: %s", self.name, exc)

    def _collect_once(self, db: sqlite3.Connection) -> int:
        """Contrib's GC: claim the interval in the metadata table, then delete expired rows."""
        claimed = db.execute(
            f"INSERT INTO {self._metadata_table} (key, value)"
            " VALUES ('last-cleanup', CURRENT_TIMESTAMP) ON CONFLICT (key)"
            " DO UPDATE SET value = CURRENT_TIMESTAMP"
            " WHERE (unixepoch(CURRENT_TIMESTAMP) - unixepoch(value)) * 1000 > ?",
            (int(self._cleanup * 1000) - 100,),
        ).rowcount
        if claimed == 0:
            return 0
        return db.execute(
            f"DELETE FROM {self.table} WHERE expiration_time IS NOT NULL"
            " AND expiration_time < CURRENT_TIMESTAMP"
        ).rowcount

    async def get(self, key: str) -> GetResponse | None:
        rows = await self._reader.run(lambda db: _fetch(db, self._get, (key,)))
        return _response(rows[0]) if rows else None

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        sql = (
            "SELECT key, value, is_binary, etag, expiration_time FROM "
            f"{self.table} WHERE key IN ({marks}) AND {_LIVE}"
        )
        rows = await self._reader.run(lambda db: _fetch(db, sql, tuple(keys)))
        found: dict[str, BulkGetItem] = {}
        for row in rows:
            try:
                found[row[0]] = BulkGetItem(row[0], _response(row[1:]))
            except StateError as exc:
                found[row[0]] = BulkGetItem(row[0], None, str(exc))
        return [found.get(key) or BulkGetItem(key, None) for key in keys]

    def _set(self, db: sqlite3.Connection, request: SetRequest, expiry: str | None) -> None:
        value, binary = _encode(request)
        etag = str(uuid.uuid4())
        if request.etag:
            updated = db.execute(
                self._update, (value, etag, binary, expiry, request.key, request.etag)
            ).rowcount
            if updated == 0:
                raise etag_mismatch()
        elif request.concurrency == Concurrency.FIRST_WRITE:
            row = db.execute(
                self._insert_only, (request.key, value, binary, etag, expiry, request.key)
            ).fetchone()
            if row is None:
                raise etag_mismatch()
        else:
            db.execute(self._replace, (request.key, value, binary, etag, expiry))

    def _delete(self, db: sqlite3.Connection, request: DeleteRequest) -> None:
        if request.etag:
            deleted = db.execute(
                f"DELETE FROM {self.table} WHERE key = ? AND etag = ?", (request.key, request.etag)
            ).rowcount
            if deleted == 0:
                raise etag_mismatch()
        else:
            db.execute(f"DELETE FROM {self.table} WHERE key = ?", (request.key,))

    async def set(self, request: SetRequest) -> None:
        expiry = _checked_expiry(request)
        await self._writer.run(lambda db: self._set(db, request, expiry))

    async def delete(self, request: DeleteRequest) -> None:
        check_options(request.concurrency, request.consistency)
        await self._writer.run(lambda db: self._delete(db, request))

    async def transact(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        # Checked in order, before anything is written: contrib's doSet/doDelete check each
        # operation as it comes and roll back on the first failure, which reads the same.
        expiries = [_checked_expiry(op) for op in operations]
        await self._writer.run(lambda db: self._transact(db, operations, expiries))

    def _transact(
        self,
        db: sqlite3.Connection,
        operations: Sequence[SetRequest | DeleteRequest],
        expiries: list[str | None],
    ) -> None:
        # IMMEDIATE takes the write lock up front, so concurrent sidecars wait (busy timeout)
        # instead of failing to upgrade a read lock half way through.
        db.execute("BEGIN IMMEDIATE")
        try:
            for op, expiry in zip(operations, expiries, strict=True):
                if isinstance(op, SetRequest):
                    self._set(db, op, expiry)
                else:
                    self._delete(db, op)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
