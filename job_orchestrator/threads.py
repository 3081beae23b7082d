"""The threads plain-function handlers run in, counted, so that a job waiting for one is told.

A plain handler cannot be interrupted: cancelled or timed out, its job ends but its thread runs
on until the function returns. Enough such threads and new plain jobs wait, shown running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class HandlerThreads:
    """At most ``size`` threads (made as needed), with a count of the calls not yet returned."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._unfinished = 0

    @property
    def full(self) -> bool:
        """Whether a call made now would wait for a thread."""
        return self._unfinished >= self.size

    async def run(self, func: Callable[[], T]) -> T:
        """``func()`` in one of the threads."""
        with self._lock:
            self._unfinished += 1

        def counted() -> T:
            try:
                return func()
            finally:
                with self._lock:
                    self._unfinished -= 1

        return await asyncio.get_running_loop().run_in_executor(self._pool, counted)

    def shutdown(self) -> None:
        """Start no more calls; a thread still running ends when its function returns."""
        self._pool.shutdown(wait=False, cancel_futures=True)
