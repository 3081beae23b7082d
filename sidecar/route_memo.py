"""Routes already decided, by the part of an event a subscription's rules can observe.

A rule such as ``event.type == "job.created"`` sees one field, which takes a handful of values,
so most events repeat an earlier decision: looking it up costs about a microsecond, evaluating
the rules 5 to 13 (converting the observed part into CEL values, then running each program).
Rules are pure functions of what they observe, so a decision found by the same key is the one
they would make again. A subscription whose rules see a field that differs per event (an id, a
timestamp) gains nothing from it: after a trial its memo turns itself off.
"""

from __future__ import annotations

from typing import Final

#: Decisions kept at most; the memo starts over when full.
MAX_ENTRIES = 1024
#: Lookups after which a memo that finds fewer than half its keys turns itself off.
TRIAL_LOOKUPS = 512

MISSING: Final = object()


class RouteMemo:
    """Path (or None: no rule matched) by key: ``repr`` of the observed part of the event."""

    __slots__ = ("_routes", "_lookups", "_hits", "_max_entries", "_trial", "enabled")

    def __init__(self, max_entries: int = MAX_ENTRIES, trial: int = TRIAL_LOOKUPS) -> None:
        self._routes: dict[str, str | None] = {}
        self._lookups = 0
        self._hits = 0
        self._max_entries = max_entries
        self._trial = trial
        self.enabled = True

    def get(self, key: str) -> str | None | object:
        """The path decided for ``key`` before, or MISSING."""
        path = self._routes.get(key, MISSING)
        if self._lookups < self._trial:
            self._lookups += 1
            self._hits += path is not MISSING
            if self._lookups == self._trial and 2 * self._hits < self._lookups:
                self.enabled = False
                self._routes.clear()
        return path

    def put(self, key: str, path: str | None) -> None:
        if not self.enabled:
            return
        if len(self._routes) >= self._max_entries:
            self._routes.clear()
        self._routes[key] = path
