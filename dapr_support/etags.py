"""Etags that count writes: what a key's etag is after a write of ours, without reading it."""

from __future__ import annotations

#: The state store whose etags count a key's writes ("1" for the first, +1 for each after).
COUNTING_STORE = "state.redis"


def counted_after(etag: str | None) -> str | None:
    """The etag a key of such a store has after one write over ``etag`` (None or "": the key
    was absent); None when ``etag`` is not a count."""
    if not etag:
        return "1"
    return str(int(etag) + 1) if etag.isdigit() else None
