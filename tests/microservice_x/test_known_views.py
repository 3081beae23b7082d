"""The views a process wrote last (pure logic: freshness, bound, etags)."""

from __future__ import annotations

from dapr_support.etags import counted_after
from microservice_x.known_views import MAX_AGE_SECONDS, KnownViews


def test_counted_etags_follow_each_write() -> None:
    assert counted_after(None) == counted_after("") == "1"
    assert counted_after("41") == "42"
    assert counted_after("c0ffee-uuid") is None


def test_a_view_is_known_with_the_etag_its_write_gave_it() -> None:
    known = KnownViews(ttl_seconds=None)
    known.wrote("job:a", b"v1", None, now=10.0)
    assert known.get("job:a", 10.5) == (b"v1", "1")
    known.wrote("job:a", b"v2", "1", now=11.0)
    assert known.get("job:a", 11.0) == (b"v2", "2")
    known.forget("job:a")
    assert known.get("job:a", 11.0) is None


def test_an_uncounted_etag_makes_the_view_unknown() -> None:
    known = KnownViews(ttl_seconds=None)
    known.wrote("job:a", b"v1", None, now=0.0)
    known.wrote("job:a", b"v2", "not-a-count", now=1.0)
    assert known.get("job:a", 1.0) is None


def test_entries_are_used_a_short_while_and_well_inside_the_views_ttl() -> None:
    forever = KnownViews(ttl_seconds=None)
    forever.wrote("job:a", b"v", None, now=0.0)
    assert forever.get("job:a", MAX_AGE_SECONDS - 0.1) is not None
    assert forever.get("job:a", MAX_AGE_SECONDS) is None
    assert len(forever) == 0  # dropped once stale
    short = KnownViews(ttl_seconds=10)
    short.wrote("job:a", b"v", None, now=0.0)
    assert short.get("job:a", 4.9) is not None
    assert short.get("job:a", 5.0) is None


def test_the_oldest_writes_make_room_for_new_ones() -> None:
    known = KnownViews(ttl_seconds=None, max_views=2)
    known.wrote("job:a", b"a", None, now=0.0)
    known.wrote("job:b", b"b", None, now=0.0)
    known.wrote("job:a", b"a2", "1", now=1.0)  # written again: now the newest
    known.wrote("job:c", b"c", None, now=2.0)
    assert len(known) == 2
    assert known.get("job:b", 2.0) is None
    assert known.get("job:a", 2.0) == (b"a2", "2")
    assert known.get("job:c", 2.0) == (b"c", "1")
