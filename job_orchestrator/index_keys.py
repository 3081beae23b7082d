"""Where the job index lives in the state store, and what a part holds: shared by its writer and
its reader.

Each replica writes its own part per minute (``jobindex-<day>-<HHMM>-<instance>``); a per-day
directory (``jobindex-<day>``) names the parts. A part holds open entries and counts the segments
it sealed (``<part>-<n>``, written once), with the ``[oldest, newest]`` createdAt of each. Each
replica's mark is ``jobindex-mark-<instance>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from job_orchestrator.index_scan import Entry


def minute_of(ts: float) -> tuple[str, str]:
    """(day ``YYYYMMDD``, minute ``HHMM``) of a timestamp, UTC."""
    stamp = datetime.fromtimestamp(ts, UTC)
    return stamp.strftime("%Y%m%d"), stamp.strftime("%H%M")


def directory_key(day: str) -> str:
    return f"jobindex-{day}"


def part_key(day: str, minute: str, instance: str) -> str:
    return f"jobindex-{day}-{minute}-{instance}"


def segment_key(part: str, number: int) -> str:
    return f"{part}-{number}"


def mark_key(instance: str) -> str:
    return f"jobindex-mark-{instance}"


@dataclass(frozen=True, slots=True)
class Part:
    """One replica's part of a minute as saved (the writer keeps what it last saved of its own):
    the open entries, and the ``[oldest, newest]`` createdAt of each segment sealed (how many:
    its length)."""

    entries: list[Entry]
    bounds: list[list[float]]

    @classmethod
    def read(cls, value: dict[str, Any] | None, day: str, minute: str) -> Part:
        """A saved part; a segment sealed before bounds were recorded gets its minute's."""
        value = value or {}
        bounds = [list(b) for b in value.get("bounds", [])][: int(value.get("sealed", 0))]
        start = datetime.strptime(day + minute, "%Y%m%d%H%M").replace(tzinfo=UTC).timestamp()
        bounds += [[start, start + 60]] * (int(value.get("sealed", 0)) - len(bounds))
        return cls(list(value.get("jobs", [])), bounds)

    def value(self) -> dict[str, Any]:
        return {"jobs": self.entries, "sealed": len(self.bounds), "bounds": self.bounds}
