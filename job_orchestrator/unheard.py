"""Jobs created here that nobody has been heard to take up yet, and when to look at each again.

Pure bookkeeping for requeue.py: no I/O, time comes in as an argument. A job is added when this
replica creates it and dropped as soon as it is heard of: its queue delivery reached this
replica, or another replica announced it final (or a cancel request) by broadcast. Short jobs
are heard of within milliseconds, so the table holds little more than the jobs in flight.
A job can also come from another replica's table (``adopt``), when that replica stopped
(handover.py), with the time its own look was due.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

#: Jobs tracked at most (about 200 bytes each); beyond, the oldest first checks are dropped.
CAPACITY = 50_000
#: The longest pause between two looks at one job.
MAX_INTERVAL_SECONDS = 3600.0


@dataclass(slots=True)
class Unheard:
    """Jobs to look at ``after`` seconds after their creation, then after doubling pauses."""

    after: float
    capacity: int = CAPACITY
    #: First looks, in creation order (so in due order): job id -> creation time.
    _first: dict[str, float] = field(default_factory=dict)
    #: Later looks: (due, job id, pause that led to it); stale entries are skipped when due.
    _later: list[tuple[float, str, float]] = field(default_factory=list)
    #: Job ids with a later look pending -> that look's (due, pause) (what _later must match).
    _pending: dict[str, tuple[float, float]] = field(default_factory=dict)
    dropped: int = 0  #: jobs no longer tracked because the table was full
    added: int = 0  #: jobs ever added (created here or adopted): a ledger saved at n has them

    def __len__(self) -> int:
        return len(self._first) + len(self._pending)

    def created(self, job_id: str, now: float) -> None:
        if len(self) >= self.capacity:
            self._drop_oldest()
        self._first[job_id] = now
        self.added += 1

    def heard(self, job_id: str) -> None:
        """The job's queue message or a later change of it was seen: it needs no look."""
        if self._first.pop(job_id, None) is None:
            self._pending.pop(job_id, None)

    def due(self, now: float) -> Iterator[tuple[str, float]]:
        """The jobs to look at now, each with the pause to its next look should it need one
        (``again``). A job handed out here is no longer tracked until ``again``."""
        while self._first:
            job_id, created = next(iter(self._first.items()))
            if created + self.after > now:
                break
            del self._first[job_id]
            yield job_id, self.after
        while self._later and self._later[0][0] <= now:
            due, job_id, pause = heapq.heappop(self._later)
            if self._pending.get(job_id) == (due, pause):
                del self._pending[job_id]
                yield job_id, pause

    def again(self, job_id: str, pause: float, now: float) -> None:
        """Look at the job again, after twice ``pause`` (the one that led to this look)."""
        if len(self) >= self.capacity:
            self.dropped += 1
            return
        longer = min(pause * 2, MAX_INTERVAL_SECONDS)
        self._schedule(job_id, now + longer, longer)

    def adopt(self, job_id: str, look_at: float) -> bool:
        """Track a job another replica was waiting to hear of, looked at first at ``look_at``
        (then as if created here); False when it is tracked already or the table is full."""
        if job_id in self._first or job_id in self._pending:
            return False
        if len(self) >= self.capacity:
            self.dropped += 1
            return False
        self._schedule(job_id, look_at, self.after)
        self.added += 1
        return True

    def waiting(self, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` of the jobs tracked, as ``(job id, when its next look is due)``, the
        soonest first."""
        found = [
            (job_id, created + self.after)
            for job_id, created in itertools.islice(self._first.items(), limit)
        ]
        later = heapq.nsmallest(
            limit, ((due, job_id) for job_id, (due, _) in self._pending.items())
        )
        found += ((job_id, due) for due, job_id in later)
        return sorted(found, key=lambda entry: entry[1])[:limit]

    def _schedule(self, job_id: str, due: float, pause: float) -> None:
        self._pending[job_id] = (due, pause)
        heapq.heappush(self._later, (due, job_id, pause))

    def _drop_oldest(self) -> None:
        self.dropped += 1
        if self._first:
            del self._first[next(iter(self._first))]
        elif self._pending:
            del self._pending[next(iter(self._pending))]
