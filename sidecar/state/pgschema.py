"""PostgreSQL side of ``state.postgresql`` v1: connection settings, schema migrations, cleanup.

The schema and the ``migrations`` level in the metadata table match components-contrib
(state/postgresql/v1/migrations.go), so tables created by daprd and by this sidecar are
interchangeable.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg

from sidecar.components import Component, ComponentError
from sidecar.state.metadata import parse_duration

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_KEYWORDS = {
    "host": "host",
    "hostaddr": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "sslmode": "ssl",
    "connect_timeout": "timeout",
    "pool_max_conns": "pool_max_conns",
}
_KV_PAIR = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")
MIGRATION_LEVEL = 3  #: contrib's v1 migrations: table, expiredate, row_id


def connect_args(component: Component) -> dict[str, Any]:
    """asyncpg arguments from ``connectionString``: a URL or libpq keyword/value pairs."""
    dsn = component.require(
        "connectionString",
        'e.g. value: "host=127.0.0.1 port=5432 user=postgres dbname=postgres"',
    ).strip()
    if dsn.startswith(("postgres://", "postgresql://")):
        return {"dsn": dsn}
    args: dict[str, Any] = {}
    position = 0
    while position < len(dsn):
        match = _KV_PAIR.match(dsn, position)
        if match is None or match.end() == position:
            raise ComponentError(
                component, "connectionString", f"cannot parse {dsn[position:]!r} as key=value"
            )
        name, raw = match.group(1).lower(), match.group(2)
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith("'") else raw
        position = match.end()
        if name in ("port", "connect_timeout", "pool_max_conns"):
            if not value.isdigit():
                raise ComponentError(
                    component, "connectionString", f"{name} must be a number, got {value!r}"
                )
            args[_KEYWORDS[name]] = int(value)
        elif name in _KEYWORDS:
            args[_KEYWORDS[name]] = value
        elif name == "application_name":
            args.setdefault("server_settings", {})["application_name"] = value
    return args


def table_name(component: Component, key: str, default: str) -> str:
    name = component.metadata.get(key, "") or default
    if not _IDENTIFIER.fullmatch(name):
        raise ComponentError(component, key, f"not a valid [schema.]table name: {name!r}")
    return name


def cleanup_interval(component: Component) -> float:
    """Seconds between expired-row sweeps; default 1 h, 0 or negative disables (contrib)."""
    return max(parse_duration(component, "cleanupInterval", 3600.0, "cleanupIntervalInSeconds"), 0)


async def migrate(pool: asyncpg.Pool, table: str, metadata_table: str) -> None:
    """Bring the tables to contrib's latest v1 schema (level 3), one sidecar at a time."""
    async with pool.acquire() as conn:
        for attempt in range(5):
            try:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {metadata_table}"
                    " (key text NOT NULL PRIMARY KEY, value text NOT NULL)"
                )
                break
            except (
                asyncpg.UniqueViolationError,
                asyncpg.DuplicateObjectError,
                asyncpg.DuplicateTableError,
            ):
                # Sidecars racing on CREATE TABLE IF NOT EXISTS; contrib retries too. Depending
                # on when the other commits between PostgreSQL's catalog checks, the error is a
                # unique violation, 'type ... already exists' (42710) or 'relation ... already
                # exists' (42P07). Once the other has committed, the next try sees the table.
                if attempt == 4:
                    raise
                await asyncio.sleep(0.05)
        await conn.execute(
            f"INSERT INTO {metadata_table} (key, value) VALUES ('lock', 'lock')"
            " ON CONFLICT (key) DO NOTHING"
        )
        lock = conn.transaction()
        await lock.start()
        try:
            # Contrib's migration lock: a row lock held while the DDL runs on another connection.
            await conn.execute(f"SELECT value FROM {metadata_table} WHERE key = 'lock' FOR UPDATE")
            # Every step is idempotent and runs even when the recorded level is current:
            # contrib keeps one level per metadata table, so a second component with its own
            # tableName but the default metadata table would otherwise never get its table.
            async with pool.acquire() as ddl:
                await _apply(ddl, table, metadata_table)
        finally:
            await lock.rollback()


async def _apply(conn: Any, table: str, metadata_table: str) -> None:
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (key text NOT NULL PRIMARY KEY,"
        " value jsonb NOT NULL, isbinary boolean NOT NULL,"
        " insertdate TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),"
        " updatedate TIMESTAMP WITH TIME ZONE NULL)"
    )
    await conn.execute(
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS expiredate TIMESTAMP WITH TIME ZONE"
    )
    index = table.rsplit(".", 1)[-1] + "_row_id_uidx"
    await conn.execute(
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS row_id BIGINT"
        " NOT NULL GENERATED BY DEFAULT AS IDENTITY"
    )
    await conn.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{index}" ON {table} (row_id)')
    await conn.execute(
        f"INSERT INTO {metadata_table} (key, value) VALUES ('migrations', $1)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        f" WHERE {metadata_table}.value::integer < excluded.value::integer",
        str(MIGRATION_LEVEL),
    )


async def collect_expired(
    pool: asyncpg.Pool, table: str, metadata_table: str, interval: float
) -> int:
    """Delete expired rows if no sidecar did within ``interval``; returns rows deleted."""
    claimed = await pool.execute(
        f"INSERT INTO {metadata_table} (key, value) VALUES ('last-cleanup', now()::text)"
        " ON CONFLICT (key) DO UPDATE SET value = now()::text"
        f" WHERE (EXTRACT('epoch' FROM now() - {metadata_table}.value::timestamp with time zone)"
        " * 1000)::bigint > $1",
        int(interval * 1000) - 100,
    )
    if claimed.endswith(" 0"):
        return 0
    deleted = await pool.execute(
        f"DELETE FROM {table} WHERE expiredate IS NOT NULL AND expiredate < now()"
    )
    return int(deleted.rsplit(" ", 1)[-1])
