"""state.postgresql's schema migration when several components or sidecars start together."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from sidecar.state import pgschema
from tests.procs import PostgresCluster

pytestmark = pytest.mark.postgres


async def test_migrations_racing_on_a_fresh_database_all_succeed(
    postgres_server: PostgresCluster,
) -> None:
    """Components (or sidecars) creating one new metadata table at once all start.

    CREATE TABLE IF NOT EXISTS racing another creator fails with a unique violation or, when
    the other commits between PostgreSQL's two catalog checks, 'type ... already exists'. The
    window is narrow, so the race runs several rounds on fresh names.
    """
    url = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    pools = [await asyncpg.create_pool(url, min_size=1, max_size=2) for _ in range(8)]
    try:
        for _ in range(8):
            suffix = uuid.uuid4().hex[:8]
            metadata_table = f"meta_{suffix}"
            tables = [f"state_{suffix}_{n}" for n in range(len(pools))]
            results = await asyncio.gather(
                *(
                    pgschema.migrate(p, t, metadata_table)
                    for p, t in zip(pools, tables, strict=True)
                ),
                return_exceptions=True,
            )
            assert [r for r in results if isinstance(r, BaseException)] == []
            async with pools[0].acquire() as conn:
                for table in (metadata_table, *tables):
                    await conn.execute(f"DROP TABLE {table}")
    finally:
        for pool in pools:
            await pool.close()
