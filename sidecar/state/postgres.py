"""``state.postgresql`` v1: jsonb values, etag = the row's ``xmin``, TTL in ``expiredate``.

Table, statements and error semantics follow components-contrib's postgresql v1
(common/component/postgresql/v1), so a daprd and this sidecar can share one table.
Schema creation (migrations) lives in pgschema.py; the query API in query.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from sidecar import go_values
from sidecar.components import Component, ComponentError
from sidecar.state import pgschema
from sidecar.state.base import (
    BulkGetItem,
    Concurrency,
    DeleteRequest,
    ETagInvalid,
    GetResponse,
    InvalidRequest,
    OutcomeUnknown,
    QueryItem,
    QueryResponse,
    SetRequest,
    StateError,
    StoreUnavailable,
)
from sidecar.state.metadata import (
    TTL_EXPIRE_TIME,
    check_options,
    etag_mismatch,
    parse_duration,
    parse_ttl,
    rfc3339,
)
from sidecar.state.query import QueryError, build_query

logger = logging.getLogger(__name__)

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    # A connection the server dropped mid-call can answer the next call with this ("cannot
    # switch to state 15; another operation (2) is in progress", seen as PostgreSQL is killed).
    asyncpg.exceptions.InternalClientError,
)
_LIVE = "(expiredate IS NULL OR expiredate >= CURRENT_TIMESTAMP)"
_EXPIRES = (
    "CASE WHEN $4::integer > 0 THEN CURRENT_TIMESTAMP + $4::integer * interval '1 second' END"
)


class _Statements:
    """Every statement text built once per table, so asyncpg's statement cache reuses them."""

    def __init__(self, table: str) -> None:
        select = f"SELECT key, value::text, isbinary, xmin::text, expiredate FROM {table}"
        self.get = f"{select} WHERE key = $1 AND {_LIVE}"
        self.bulk_get = f"{select} WHERE key = ANY($1::text[]) AND {_LIVE}"
        upsert = (
            f"INSERT INTO {table} AS t (key, value, isbinary, expiredate)"
            f" VALUES ($1, $2::jsonb, $3, {_EXPIRES})"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " isbinary = excluded.isbinary, updatedate = CURRENT_TIMESTAMP,"
            f" expiredate = {_EXPIRES}"
        )
        self.upsert = upsert
        # first-write without etag: only replace a row that expired but was not collected yet.
        self.insert_only = (
            upsert + " WHERE (t.expiredate IS NOT NULL AND t.expiredate < CURRENT_TIMESTAMP)"
        )
        self.update = (
            f"UPDATE {table} SET value = $2::jsonb, isbinary = $3,"
            f" updatedate = CURRENT_TIMESTAMP, expiredate = {_EXPIRES}"
            " WHERE key = $1 AND xmin::text = $5"
            " AND (expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP)"
        )
        self.delete = f"DELETE FROM {table} WHERE key = $1"
        self.delete_etag = f"DELETE FROM {table} WHERE key = $1 AND xmin::text = $2"


def _xmin(etag: str) -> str:
    """Contrib parses etags with strconv.ParseUint(etag, 10, 32)."""
    problem = ""
    if not etag.isascii() or not etag.isdigit():
        problem = "invalid syntax"
    elif int(etag) > 2**32 - 1:
        problem = "value out of range"
    if problem:
        raise ETagInvalid(f'invalid etag value: strconv.ParseUint: parsing "{etag}": {problem}')
    return str(int(etag))


def _affected(status: str) -> int:
    """Row count from a command tag such as ``INSERT 0 1`` or ``UPDATE 0``."""
    return int(status.rsplit(" ", 1)[-1])


def _encode(request: SetRequest) -> tuple[str, bool]:
    """(jsonb text, isbinary): binary values are stored as a base64 JSON string, like contrib."""
    if request.is_json:
        return request.value.decode(), False
    return json.dumps(base64.b64encode(request.value).decode()), True


def _response(record: asyncpg.Record) -> GetResponse:
    value: str = record[1]
    try:
        data = base64.b64decode(json.loads(value), validate=True) if record[2] else value.encode()
    except (ValueError, TypeError) as exc:
        raise StateError(f"failed to decode binary data: {exc}") from None
    meta = {TTL_EXPIRE_TIME: rfc3339(record[4])} if record[4] is not None else {}
    return GetResponse(data, record[3], meta)


class PostgresStateStore:
    capabilities = ("ETAG", "TRANSACTIONAL", "TTL", "KEYS_LIKE", "QUERY_API", "ACTOR")
    features = frozenset(capabilities)
    marshal = staticmethod(go_values.encoding_json)

    def __init__(self, component: Component) -> None:
        self.name = component.name
        self._component = component
        self._connect_args = pgschema.connect_args(component)
        self.table = pgschema.table_name(component, "tableName", "state")
        self._metadata_table = pgschema.table_name(component, "metadataTableName", "dapr_metadata")
        self._timeout = parse_duration(component, "timeout", 20.0, "timeoutInSeconds")
        if self._timeout < 1:
            raise ComponentError(component, "timeout", "must be at least 1s")
        self._cleanup = pgschema.cleanup_interval(component)
        self._sql = _Statements(self.table)
        self._pool: asyncpg.Pool | None = None
        self._gc: asyncio.Task[None] | None = None

    async def init(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                min_size=1,
                max_size=self._connect_args.pop("pool_max_conns", 10),
                command_timeout=self._timeout,
                timeout=self._timeout,
                **self._connect_args,
            )
            await pgschema.migrate(self._pool, self.table, self._metadata_table)
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            raise ComponentError(
                self._component, "connectionString", f"failed to connect to the database: {exc}"
            ) from exc
        if self._cleanup:
            self._gc = asyncio.create_task(self._collect(self._cleanup), name=f"{self.name}-gc")

    async def close(self) -> None:
        if self._gc is not None:
            self._gc.cancel()
            await asyncio.gather(self._gc, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _collect(self, interval: float) -> None:
        """Delete expired rows periodically; the metadata row elects one sidecar per interval."""
        while True:
            await asyncio.sleep(interval)
            try:
                await pgschema.collect_expired(self._db, self.table, self._metadata_table, interval)
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                logger.warning("state store %s: expired-row cleanup failed: %s", self.name, exc)

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable(f"state store {self.name} is not initialised")
        return self._pool

    async def get(self, key: str) -> GetResponse | None:
        async with _errors():
            record = await self._db.fetchrow(self._sql.get, key)
        return None if record is None else _response(record)

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]:
        if not keys:
            return []
        async with _errors():
            records = await self._db.fetch(self._sql.bulk_get, list(keys))
        found: dict[str, BulkGetItem] = {}
        for record in records:
            try:
                found[record[0]] = BulkGetItem(record[0], _response(record))
            except StateError as exc:
                found[record[0]] = BulkGetItem(record[0], None, str(exc))
        return [found.get(key) or BulkGetItem(key, None) for key in keys]

    async def _set(self, db: Any, request: SetRequest) -> None:
        check_options(request.concurrency, request.consistency)  # contrib's doDelete does not
        ttl = self._ttl(request)
        value, binary = _encode(request)
        if request.etag:
            status = await db.execute(
                self._sql.update, request.key, value, binary, ttl, _xmin(request.etag)
            )
        else:
            text = (
                self._sql.insert_only
                if request.concurrency == Concurrency.FIRST_WRITE
                else self._sql.upsert
            )
            status = await db.execute(text, request.key, value, binary, ttl)
        if _affected(status) != 1:
            if request.etag:
                raise etag_mismatch()
            raise StateError("no item was updated")

    @staticmethod
    def _ttl(request: SetRequest) -> int:
        try:
            return parse_ttl(request.metadata) or 0
        except InvalidRequest as exc:
            raise InvalidRequest(f"error parsing TTL: {exc}") from None

    async def _delete(self, db: Any, request: DeleteRequest) -> None:
        if request.etag:
            status = await db.execute(self._sql.delete_etag, request.key, _xmin(request.etag))
            if _affected(status) != 1:
                raise etag_mismatch()
        else:
            await db.execute(self._sql.delete, request.key)

    async def set(self, request: SetRequest) -> None:
        async with _errors():
            await self._set(self._db, request)

    async def delete(self, request: DeleteRequest) -> None:
        async with _errors():
            await self._delete(self._db, request)

    async def transact(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        async with _errors():
            if len(operations) == 1:  # contrib skips the transaction for a single operation
                await self._apply(self._db, operations[0])
                return
            async with self._db.acquire() as conn:
                committing = False
                try:
                    async with conn.transaction():
                        for op in operations:
                            await self._apply(conn, op)
                        committing = True  # leaving the block sends COMMIT
                except _UNAVAILABLE as exc:
                    if committing:
                        # The server may have committed before the connection went away.
                        raise OutcomeUnknown(
                            f"{str(exc) or type(exc).__name__}; the transaction may or may not "
                            "have been committed"
                        ) from exc
                    raise

    async def _apply(self, db: Any, op: SetRequest | DeleteRequest) -> None:
        if isinstance(op, SetRequest):
            await self._set(db, op)
        else:
            await self._delete(db, op)

    async def query(self, query: Mapping[str, object]) -> QueryResponse:
        try:
            sql = build_query(query, self.table)
        except QueryError as exc:
            raise InvalidRequest(str(exc)) from None
        async with _errors():
            records = await self._db.fetch(sql.sql, *sql.params)
        results = [QueryItem(r[0], r[1].encode(), r[2]) for r in records]
        return QueryResponse(results, sql.next_token(len(results)))


@contextlib.asynccontextmanager
async def _errors() -> Any:
    """Backend failures as StateError: StoreUnavailable when the server cannot be reached."""
    try:
        yield
    except StateError:
        raise
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
    except asyncpg.PostgresError as exc:
        raise StateError(str(exc)) from exc
