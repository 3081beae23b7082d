"""Requests waiting on a job, woken by notifications (local runner, broadcast events); no polling.

A watch is registered BEFORE the caller reads the job, so a change that lands between the read and
the wait still wakes it. When the server begins to shut down, ``release`` ends every wait at once
(and any wait begun later), so waiting requests are answered with what is known instead of being
cut off when the graceful-shutdown timeout runs out. A wait also ends when its client goes away.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

FINAL = frozenset({"Completed", "Failed", "Canceled"})
#: How long a wait goes on before it listens for its client's disconnect (so an abandoned
#: request gives its waiter slot back after about this long).
LISTEN_AFTER_SECONDS = 1.0

#: Returns once the waiting client has gone away (it closed its connection): the wait ends then,
#: so an abandoned request gives back its waiter slot at once instead of at its deadline.
ClientGone = Callable[[], Coroutine[Any, Any, object]]


def is_final(job: dict[str, Any] | None) -> bool:
    return job is not None and job.get("status") in FINAL


class Watch:
    """One waiter on one job: the newest version seen, and a future to sleep on until it changes.

    Kept small (one future and one timer while waiting, and past LISTEN_AFTER_SECONDS one task
    watching for the client's disconnect when told how): a replica holds thousands.
    """

    __slots__ = ("_dirty", "_waiter", "job_id", "latest", "released")

    def __init__(self, job_id: str, *, released: bool = False) -> None:
        self.job_id = job_id
        self.latest: dict[str, Any] | None = None
        #: no more waiting: the server is shutting down, or the client went away
        self.released = released
        self._dirty = False  #: a newer version arrived since the last ``changed``
        self._waiter: asyncio.Future[None] | None = None

    def release(self) -> None:
        """Stop waiting now and from now on (``changed`` returns at once)."""
        self.released = True
        _wake(self._waiter)

    def offer(self, job: dict[str, Any]) -> None:
        """Keep ``job`` if it is newer than what we hold (events may arrive twice or late).

        At an equal sequence a final version wins: a stray event of a write that lost its
        race can carry the same sequence as the real one.
        """
        seq = int(job.get("sequence", 0))
        held = self.latest
        held_seq = int(held.get("sequence", 0)) if held is not None else -1
        if seq > held_seq or (seq == held_seq and is_final(job) and not is_final(held)):
            self.latest = job
            self._dirty = True
            _wake(self._waiter)

    async def changed(self, timeout: float) -> bool:
        """Wait until a newer version arrives; False when ``timeout`` passed first (or the
        watch was released)."""
        if not self._dirty and timeout > 0 and not self.released:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        dirty, self._dirty = self._dirty, False
        return dirty

    async def final(self, timeout: float, gone: ClientGone | None = None) -> dict[str, Any] | None:
        """The job once final, or None when ``timeout`` passed first (or the watch was released,
        as it is when ``gone`` returns)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # ASGI tells of a disconnect only through ``receive`` and uvicorn does not cancel the
        # request, so something must listen while we sleep: one task, for the wait only (with
        # the server's ``receive`` it waits in, about 2 KB more a waiter: bench scenario 4).
        # Most waits end within LISTEN_AFTER_SECONDS, and never start one (its CPU was about
        # 0.1 ms a job of scenario 2's).
        listener: list[asyncio.Task[None]] = []
        timer = None
        if gone is not None and not is_final(self.latest):
            start = functools.partial(self._listen, listener, gone)
            timer = loop.call_later(LISTEN_AFTER_SECONDS, start)
        try:
            while not is_final(self.latest):
                if not await self.changed(deadline - loop.time()):
                    return None
            return self.latest
        finally:
            if timer is not None:
                timer.cancel()
            for task in listener:
                task.cancel()

    def _listen(self, listener: list[asyncio.Task[None]], gone: ClientGone) -> None:
        listener.append(asyncio.get_running_loop().create_task(self._release_when(gone)))

    async def _release_when(self, gone: ClientGone) -> None:
        await gone()
        self.release()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Waiters:
    """Job id -> its watches. Everything that learns a job changed calls ``notify``."""

    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}
        #: job id -> loop time of its last re-read by an event stream (see ``refresh_due``)
        self._refreshed: dict[str, float] = {}
        self.released = False

    @contextmanager
    def watch(self, job_id: str) -> Iterator[Watch]:
        watch = Watch(job_id, released=self.released)
        self._watches.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(job_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[job_id]
                    self._refreshed.pop(job_id, None)

    def notify(self, job: dict[str, Any]) -> None:
        for watch in self._watches.get(str(job.get("id")), ()):
            watch.offer(job)

    def refresh_due(self, job_id: str, interval: float) -> bool:
        """Whether a watcher of ``job_id`` should re-read it now: True at most once per
        ``interval`` for all of the job's watchers here, whose re-read then ``notify``s them all.
        """
        now = asyncio.get_running_loop().time()
        if now - self._refreshed.get(job_id, -interval) < interval:
            return False
        self._refreshed[job_id] = now
        return True

    def release(self) -> None:
        """The server is shutting down: wake every waiter, and let no later one sleep."""
        self.released = True
        for watches in self._watches.values():
            for watch in watches:
                watch.release()

    def __len__(self) -> int:
        return sum(len(w) for w in self._watches.values())
