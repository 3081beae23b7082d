"""Requests waiting on a job, woken by notifications (local runner, broadcast events); no polling.

A watch is registered BEFORE the caller reads the job, so a change that lands between the read and
the wait still wakes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FINAL = frozenset({"Completed", "Failed", "Canceled"})


def is_final(job: dict[str, Any] | None) -> bool:
    return job is not None and job.get("status") in FINAL


class Watch:
    """One waiter on one job: the newest version seen and an event set when it changes."""

    __slots__ = ("_changed", "job_id", "latest")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.latest: dict[str, Any] | None = None
        self._changed = asyncio.Event()

    def offer(self, job: dict[str, Any]) -> None:
        """Keep ``job`` if it is newer than what we hold (events may arrive twice or late)."""
        if self.latest is None or int(job.get("sequence", 0)) > int(self.latest.get("sequence", 0)):
            self.latest = job
            self._changed.set()

    async def changed(self, timeout: float) -> bool:
        """Wait until a newer version arrives; False when ``timeout`` passed first."""
        if timeout <= 0:
            return False
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    async def final(self, timeout: float) -> dict[str, Any] | None:
        """The job once final, or None when ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not is_final(self.latest):
            if not await self.changed(deadline - loop.time()):
                return None
        return self.latest


class Waiters:
    """Job id -> its watches. Everything that learns a job changed calls ``notify``."""

    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}

    @contextmanager
    def watch(self, job_id: str) -> Iterator[Watch]:
        watch = Watch(job_id)
        self._watches.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(job_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[job_id]

    def notify(self, job: dict[str, Any]) -> None:
        for watch in self._watches.get(str(job.get("id")), ()):
            watch.offer(job)

    def __len__(self) -> int:
        return sum(len(w) for w in self._watches.values())
