"""Final events a state-store outage may have cost, told from the writer's own view of the store.

Pure bookkeeping for reannounce.py: no I/O, time comes in as an argument. The outbox relay
(daprd's, and the sidecar's on another replica) looks up each event's marker in the state store
before it publishes, and gives the event up when it cannot read the store for ~10 s. So a final
event is at risk when the store failed soon after its write. Each final written here is kept for
``window`` seconds; when this replica sees the store fail, the finals of that window become
suspects, to be announced again once the store answers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Jobs tracked at most, written and suspect together (about 150 bytes each: 30 s of 3,000
#: finals a second); beyond, the oldest are dropped and counted.
CAPACITY = 100_000


@dataclass(slots=True)
class AtRisk:
    """Finals written in the last ``window`` seconds, and the suspects an outage made of them."""

    window: float
    capacity: int = CAPACITY
    #: (time written, job id), oldest first
    _recent: deque[tuple[float, str]] = field(default_factory=deque)
    #: job ids to announce again, oldest first (a dict as an ordered set)
    _suspects: dict[str, None] = field(default_factory=dict)
    dropped: int = 0  #: jobs no longer tracked because the table was full

    def watching(self, now: float) -> bool:
        """Whether finals wait for their window to pass: the store's health matters now."""
        self._forget_older(now)
        return bool(self._recent)

    @property
    def suspects(self) -> int:
        return len(self._suspects)

    def wrote(self, job_id: str, now: float) -> None:
        """A final of ``job_id`` was committed at ``now``."""
        self._forget_older(now)
        if len(self._recent) + len(self._suspects) >= self.capacity:
            self._drop_one()
        self._recent.append((now, job_id))

    def unsure(self, job_id: str) -> None:
        """A final write of ``job_id`` failed for want of the store: it may have committed."""
        self._suspect(job_id)

    def failed(self, now: float) -> None:
        """The store failed a call at ``now``: every final of the window is suspect."""
        self._forget_older(now)
        while self._recent:
            self._suspect(self._recent.popleft()[1])

    def take(self, count: int) -> list[str]:
        """Up to ``count`` suspects to announce again, oldest first; no longer tracked."""
        taken: list[str] = []
        for job_id in self._suspects:
            if len(taken) == count:
                break
            taken.append(job_id)
        for job_id in taken:
            del self._suspects[job_id]
        return taken

    def _suspect(self, job_id: str) -> None:
        if job_id in self._suspects:
            return
        if len(self._recent) + len(self._suspects) >= self.capacity:
            self._drop_one()
        self._suspects[job_id] = None

    def _forget_older(self, now: float) -> None:
        """Finals whose window passed with the store answering: their events got out."""
        horizon = now - self.window
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()

    def _drop_one(self) -> None:
        """The oldest final still in its window goes first: it is only likely at risk."""
        self.dropped += 1
        if self._recent:
            self._recent.popleft()
        elif self._suspects:
            del self._suspects[next(iter(self._suspects))]
