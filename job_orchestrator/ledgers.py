"""The saved form of a replica's unheard-of jobs, and the rule for taking over another's.

Pure: no I/O, time comes in as an argument (handover.py reads and writes these records). Each
replica that creates jobs saves, every few seconds, the jobs it still waits to hear of with the
time it would next look at each (its ledger), and lists itself in one directory. A ledger that
another replica sees unchanged for ``stale_after`` seconds of its own clock (so clocks that
disagree between hosts do not matter), or that a replica saved as it stopped, belongs to a
replica that is gone: the replica that sees it takes its jobs over.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

from job_orchestrator.jobs import parse_iso

PREFIX = "jobunheard-"
#: Jobs one ledger holds at most (about 60 bytes each), the soonest looks first.
CAPACITY = 20_000
#: A job is in its creator's table before it is stamped created plus this (ledgers.saved_before).
SAVE_SLACK_SECONDS = 1.0


def ledger_key(instance: str) -> str:
    return f"{PREFIX}{instance}"


def directory_key(topic: str) -> str:
    """The directory of the replicas that queue jobs on ``topic`` and keep a ledger:
    ``{"instances": [instance, ...]}``. A job announced again goes to the queue of the replica
    that announces it, so only replicas of one queue take each other's jobs over."""
    return f"{PREFIX}replicas-{topic}"


@dataclass(frozen=True, slots=True)
class Ledger:
    instance: str
    replica: str  #: the replica's name, for the logs
    saved_at: float
    save_every: float  #: how often its replica saves it, seconds
    #: (job id, when its creator would look at it next), epoch seconds
    jobs: tuple[tuple[str, float], ...] = ()
    stopped: bool = False  #: saved by the replica as it stopped
    adopted_by: str = ""  #: the instance that took these jobs over (the ledger is spent)

    def value(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "replica": self.replica,
            "savedAt": self.saved_at,
            "saveEvery": self.save_every,
            "jobs": [[job_id, look_at] for job_id, look_at in self.jobs],
            "stopped": self.stopped,
            "adoptedBy": self.adopted_by,
        }

    @classmethod
    def from_value(cls, value: Any) -> Ledger | None:
        """The ledger a record holds; None when it is not one (a foreign or damaged record)."""
        if not isinstance(value, dict):
            return None
        instance, replica, adopted_by = (value.get(k) for k in ("instance", "replica", "adoptedBy"))
        saved_at, save_every = _seconds(value.get("savedAt")), _seconds(value.get("saveEvery"))
        if not isinstance(instance, str) or not isinstance(replica, str) or saved_at is None:
            return None
        return cls(
            instance,
            replica,
            saved_at,
            max(save_every or 0.0, 0.0),
            tuple(_jobs(value.get("jobs"))),
            value.get("stopped") is True,
            adopted_by if isinstance(adopted_by, str) else "",
        )

    def spent(self, by: str, now: float) -> Ledger:
        """This ledger once ``by`` took its jobs over."""
        return Ledger(self.instance, self.replica, now, self.save_every, (), self.stopped, by)


@dataclass(slots=True)
class Sightings:
    """When this replica first saw each other replica's ledger as it is now (its own clock).

    A ledger is stale once seen unchanged for ``saves`` of its own saving intervals, and never
    sooner than ``stale_after``.
    """

    stale_after: float
    saves: int
    _seen: dict[str, tuple[float, float]] = field(default_factory=dict)  #: -> (savedAt, seen)

    def orphaned(self, ledger: Ledger, now: float) -> bool:
        """Whether the ledger's replica is gone, leaving its jobs to whoever takes them."""
        if ledger.adopted_by:
            return False
        if ledger.stopped:
            return True
        seen = self._seen.get(ledger.instance)
        if seen is None or seen[0] != ledger.saved_at:
            self._seen[ledger.instance] = (ledger.saved_at, now)
            return False
        return now - seen[1] > max(self.stale_after, self.saves * ledger.save_every)

    def keep_only(self, instances: list[str]) -> None:
        """Forget the replicas no longer listed."""
        listed = set(instances)
        for instance in [i for i in self._seen if i not in listed]:
            del self._seen[instance]


def unsaved_query(instance: str, limit: int, token: str = "") -> dict[str, Any]:
    """A state query for the New jobs ``instance`` created, newest first: those created after
    its ledger's last save are in no ledger."""
    page: dict[str, Any] = {"limit": limit}
    if token:
        page["token"] = token
    conditions = [
        {"EQ": {"kind": "job"}},
        {"EQ": {"status": "New"}},
        {"EQ": {"createdBy": instance}},
    ]
    return {
        "filter": {"AND": conditions},
        # The id breaks ties: page tokens are offsets on state.postgresql.
        "sort": [{"key": "createdAt", "order": "DESC"}, {"key": "id", "order": "ASC"}],
        "page": page,
    }


def unsaved_jobs(rows: list[dict[str, Any]], instance: str) -> list[tuple[str, float]]:
    """``(job id, createdAt)`` of the rows that are New jobs ``instance`` created; rows of
    other apps sharing the table, or changed since the query matched them, are left out."""
    found = []
    for row in rows:
        job_id, created = row.get("id"), row.get("createdAt")
        if (
            row.get("kind") == "job"
            and row.get("status") == "New"
            and row.get("createdBy") == instance
            and isinstance(job_id, str)
            and isinstance(created, str)
        ):
            with contextlib.suppress(ValueError):
                stamp = parse_iso(created)
                if stamp is not None:
                    found.append((job_id, stamp))
    return found


def saved_before(ledger: Ledger, created_at: float) -> bool:
    """Whether a job its replica created at ``created_at`` (its own clock, as ``savedAt``)
    is in the ledger if still unheard of: created a second or more before the last save, when
    the ledger was not full."""
    return len(ledger.jobs) < CAPACITY and created_at < ledger.saved_at - SAVE_SLACK_SECONDS


def members(directory: Any) -> list[str]:
    """The instances a directory record lists (none when it is missing or not one)."""
    listed = directory.get("instances") if isinstance(directory, dict) else None
    if not isinstance(listed, list):
        return []
    return [instance for instance in listed if isinstance(instance, str)]


def directory(instances: list[str]) -> dict[str, Any]:
    return {"instances": sorted(set(instances))}


def _seconds(number: Any) -> float | None:
    """A finite JSON number as a float; None for anything else (a bool too)."""
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    return float(number) if math.isfinite(number) else None


def _jobs(entries: Any) -> list[tuple[str, float]]:
    if not isinstance(entries, list):
        return []
    jobs = []
    for entry in entries:
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str):
            look_at = _seconds(entry[1])
            if look_at is not None:
                jobs.append((entry[0], look_at))
    return jobs
