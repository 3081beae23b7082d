"""Index entries newest first across one span of parts, reading sealed segments only as needed.

A minute's entries are in the open entries of each replica's part and in the segments it sealed.
Entries are only roughly in time order (late and recovered ones are appended), so each part
records the oldest and newest ``createdAt`` of every segment it sealed. A segment is read once it
may hold the next entry of the page, and never when it holds only entries the cursor has passed:
a page costs about its own entries, however busy the minute.

Pure: ``wanted`` says which segments to read, ``add`` takes what was read.
"""

from __future__ import annotations

import heapq
from typing import Any

Entry = list[Any]  #: ``[createdAt, id, owner]``


def order(entry: Entry) -> tuple[float, str]:
    """Sort key of an entry (or a cursor position ``[createdAt, id]``), newest first."""
    return -float(entry[0]), str(entry[1])


def bounds_of(entries: list[Entry]) -> list[float]:
    """``[oldest, newest]`` createdAt of a segment about to be sealed (never empty)."""
    stamps = [float(e[0]) for e in entries]
    return [min(stamps), max(stamps)]


class Scan:
    """The entries strictly after ``position`` in newest-first order, duplicates dropped."""

    def __init__(self, position: list[Any] | None) -> None:
        self._mark = order(position) if position else None
        #: (order, arrival, entry): arrival keeps two copies of one entry from comparing entries.
        self._heap: list[tuple[float, str, int, Entry]] = []
        self._arrivals = 0
        #: Segments not read yet: (-newest, key), so the one that may hold the newest comes first.
        self._unread: list[tuple[float, str]] = []
        self._listed: set[str] = set()

    def add(self, entries: list[Entry]) -> None:
        for entry in entries:
            key = order(entry)
            if self._mark is None or key > self._mark:
                self._arrivals += 1
                heapq.heappush(self._heap, (*key, self._arrivals, entry))

    def add_segment(self, key: str, oldest: float, newest: float) -> None:
        """A sealed segment holding entries from ``oldest`` to ``newest``; read only once
        ``wanted`` names it."""
        if self._mark is not None and -oldest < self._mark[0]:
            return  # everything in it is newer than the cursor: an earlier page listed it
        heapq.heappush(self._unread, (-newest, key))

    def wanted(self) -> list[str]:
        """Segments to read (and ``add``) before ``next`` can answer; empty when it can."""
        self._drop_listed()
        if not self._heap:
            return [heapq.heappop(self._unread)[1]] if self._unread else []
        # A segment whose newest entry is not older than the next one may hold an entry first.
        keys: list[str] = []
        while self._unread and self._unread[0][0] <= self._heap[0][0]:
            keys.append(heapq.heappop(self._unread)[1])
        return keys

    def next(self) -> Entry | None:
        """The next entry, None when there are none left; only when ``wanted`` is empty."""
        self._drop_listed()
        if not self._heap:
            return None
        entry = heapq.heappop(self._heap)[3]
        self._listed.add(str(entry[1]))
        return entry

    def _drop_listed(self) -> None:
        """A job indexed twice (by a replica that recovered it) is listed once."""
        while self._heap and str(self._heap[0][3][1]) in self._listed:
            heapq.heappop(self._heap)
