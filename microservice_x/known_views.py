"""The job views this process wrote last, with the etags they got, so the next events of a job
are folded into its view without reading it back first.

On state.redis an etag counts the key's writes ("1", then +1 per write), so the etag after our
own write is known. When another replica wrote the view since, or it expired, a write over the
remembered etag loses (or finds no view) and the store falls back to read and compare-and-swap:
a stale entry costs one failed write, never a lost event. Entries are kept a short while only,
well inside a view's time to live.
"""

from __future__ import annotations

from dataclasses import dataclass

from dapr_support.etags import counted_after

#: Views remembered at most (each about the size of one stored view).
MAX_VIEWS = 4096
#: Seconds an entry is used for at most, and at most half the views' time to live.
MAX_AGE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Known:
    data: bytes
    etag: str
    written_at: float  #: monotonic seconds


class KnownViews:
    def __init__(self, ttl_seconds: int | None, max_views: int = MAX_VIEWS) -> None:
        self._max_age = (
            MAX_AGE_SECONDS if ttl_seconds is None else min(MAX_AGE_SECONDS, ttl_seconds / 2)
        )
        self._max_views = max_views
        self._views: dict[str, Known] = {}

    def get(self, key: str, now: float) -> tuple[bytes, str] | None:
        """The view written here last under ``key`` and its etag, if still fresh."""
        known = self._views.get(key)
        if known is None:
            return None
        if now - known.written_at >= self._max_age:
            del self._views[key]
            return None
        return known.data, known.etag

    def wrote(self, key: str, data: bytes, etag_before: str | None, now: float) -> None:
        """``data`` was saved over ``etag_before`` (None: inserted)."""
        etag = counted_after(etag_before)
        if etag is None:
            self._views.pop(key, None)
            return
        self._views.pop(key, None)  # re-inserted last: the oldest entries go first
        self._views[key] = Known(data, etag, now)
        while len(self._views) > self._max_views:
            del self._views[next(iter(self._views))]

    def forget(self, key: str) -> None:
        self._views.pop(key, None)

    def __len__(self) -> int:
        return len(self._views)
