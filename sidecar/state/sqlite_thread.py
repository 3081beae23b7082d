"""One sqlite3 connection in one dedicated thread, each operation a single hop to it.

A hop per operation (statement, fetch and commit) is cheaper than aiosqlite's hop per
cursor call, and the one thread serialises what runs on the connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sidecar.state.base import StateError, StoreUnavailable

T = TypeVar("T")


class SqliteThread:
    def __init__(self, store: str, name: str) -> None:
        self._store = store
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def _hop(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise StateError(str(exc)) from exc

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Make the connection on this thread; a sqlite3 error is a StateError."""
        self._conn = await self._hop(connect)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on this thread; a sqlite3 error is a StateError."""
        return await self._hop(lambda: fn(self._db()))

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"state store {self._store} is not initialised")
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=False)
