"""Listing helpers: cursors, the query, index ordering, the index marks."""

from __future__ import annotations

import pytest

from job_orchestrator.index import (
    Claimed,
    directory_key,
    mark_after,
    mark_key,
    minute_of,
    part_key,
    read_ref,
    sort_claims,
    spans,
)
from job_orchestrator.listing import (
    BadCursor,
    after,
    decode_cursor,
    encode_cursor,
    newer_first,
    query_for,
)


def test_cursor_round_trip_and_garbage() -> None:
    data = {"day": "20260101", "after": [1.5, "abc"]}
    assert decode_cursor(encode_cursor(data)) == data
    for garbage in ["%%%", "bm90IGpzb24", encode_cursor([1])]:  # type: ignore[arg-type]
        with pytest.raises(BadCursor):
            decode_cursor(garbage)


def test_query_filters_and_pages() -> None:
    assert query_for(None, None, 5, None) == {
        "filter": {"EQ": {"kind": "job"}},
        "sort": [{"key": "createdAt", "order": "DESC"}],
        "page": {"limit": 5},
    }
    q = query_for("x", "Completed", 10, "20")
    assert q["filter"] == {
        "AND": [{"EQ": {"kind": "job"}}, {"EQ": {"owner": "x"}}, {"EQ": {"status": "Completed"}}]
    }
    assert q["page"] == {"limit": 10, "token": "20"}


def test_index_order_and_continuation() -> None:
    entries = newer_first([[1.0, "a", None], [3.0, "c", "o"], [2.0, "b", None], [3.0, "c", "o"]])
    assert [e[1] for e in entries] == ["c", "b", "a"]
    assert [e[1] for e in after(entries, [3.0, "c"])] == ["b", "a"]
    assert after(entries, None) == entries


def test_index_keys_are_per_day_minute_and_instance() -> None:
    assert minute_of(0) == ("19700101", "0000")
    assert minute_of(86399.9) == ("19700101", "2359")
    assert directory_key("20260101") == "jobindex-20260101"
    assert part_key("20260101", "0930", "abc") == "jobindex-20260101-0930-abc"


def test_index_refs_and_marks() -> None:
    assert read_ref("abc:12") == ("abc", 12)
    assert read_ref("a:b:3") == ("a:b", 3)
    for bad in (None, "", "abc", "abc:", ":3", "abc:-1", "abc:x"):
        assert read_ref(bad) is None
    assert mark_key("abc") == "jobindex-mark-abc"
    # Everything given out is saved: the mark is the last number; else just below the lowest
    # number still unsaved, however many higher ones are saved already.
    assert mark_after(7, set()) == 7
    assert mark_after(7, {5, 3}) == 2
    assert mark_after(0, set()) == 0


def test_claims_are_settled_by_their_creators_marks_or_orphaned_when_late() -> None:
    def claim(instance: str, number: int, since: float) -> Claimed:
        return Claimed(since, instance, number, [since, f"{instance}{number}", None])

    indexed = claim("a", 3, since=0)  # a's mark passed it
    behind = claim("a", 9, since=5)  # a's mark behind, not long enough yet
    orphan = claim("b", 1, since=0)  # b never saved a mark (read as 0), long ago
    unread = claim("c", 4, since=0)  # c's mark was not read this time: keep waiting
    waiting, orphans = sort_claims(
        [indexed, behind, orphan, unread], {"a": 5, "b": 0}, now=12, stopped_after=10
    )
    assert waiting == [behind, unread]
    assert orphans == [orphan]


def test_a_page_reads_one_minute_first_then_doubles_the_span() -> None:
    minutes = [f"{m:04d}" for m in range(2359, 2359 - 40, -1)]  # newest first
    groups = list(spans(minutes, 16))
    assert [len(g) for g in groups] == [1, 2, 4, 8, 16, 9]
    assert set().union(*groups) == set(minutes)
    assert groups[0] == {"2359"} and groups[1] == {"2358", "2357"}
    assert list(spans([], 16)) == []
