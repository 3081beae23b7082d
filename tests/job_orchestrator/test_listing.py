"""Listing helpers: cursors, the query, index ordering, the index marks."""

from __future__ import annotations

from typing import Any

import pytest

from job_orchestrator.index import Claimed, entry_of, mark_after, read_ref, sort_claims
from job_orchestrator.index_keys import directory_key, mark_key, minute_of, part_key
from job_orchestrator.index_pages import spans
from job_orchestrator.index_scan import Scan, bounds_of
from job_orchestrator.jobs import Job, new_job
from job_orchestrator.listing import (
    BadCursor,
    Position,
    QueryCursor,
    decode_cursor,
    decode_position,
    decode_query_cursor,
    encode_cursor,
    encode_query_cursor,
    query_for,
    split_rows,
)


def test_cursor_round_trip_and_garbage() -> None:
    data = {"day": "20260101", "after": [1.5, "abc"]}
    assert decode_cursor(encode_cursor(data)) == data
    for garbage in ["%%%", "bm90IGpzb24", encode_cursor([1])]:  # type: ignore[arg-type]
        with pytest.raises(BadCursor):
            decode_cursor(garbage)


def test_cursors_of_the_wrong_shape_are_bad_cursors() -> None:
    assert decode_position(encode_cursor({"after": [1.5, "abc"]})) == [1.5, "abc"]
    assert decode_query_cursor(encode_cursor({"token": "t1"})) == ("t1", None, False)
    held = QueryCursor("t1", Position("2026-01-01T00:00:00.000Z", "a"), True)
    assert decode_query_cursor(encode_query_cursor(held)) == held
    for after in ("abc", 5, [1e20, "x"], [float("nan"), "x"], ["x", "y"], [True, "x"], [-1, "x"]):
        with pytest.raises(BadCursor):
            decode_position(encode_cursor({"after": after}))
    for cursor in (
        {},
        {"token": 5},
        {"token": ""},
        {"after": [1.5, "abc"]},
        {"token": "t1", "held": "yes"},
        {"token": "t1", "passed": "a"},
        {"token": "t1", "passed": [1.5, "a"]},
        {"token": "t1", "passed": ["2026-01-01T00:00:00.000Z", "a||b"]},
        {"token": "t1", "passed": ["2026-01-01T00:00:00.000Z", "a", "b"]},
    ):
        with pytest.raises(BadCursor):
            decode_query_cursor(encode_cursor(cursor))


def at(second: int, job_id: str) -> Position:
    return Position(f"2026-01-01T00:00:{second:02d}.000Z", job_id)


def rows(*positions: Position | dict[str, Any]) -> list[dict[str, Any]]:
    """Query answer values, newest first as the query sorts them."""
    return [
        p if isinstance(p, dict) else {"createdAt": p.created_at, "id": p.id} for p in positions
    ]


def test_a_full_answer_holds_its_last_row_back_for_the_next_page() -> None:
    a, b, c, d, e, f = (at(50 - n, x) for n, x in enumerate("abcdef"))
    # First page of 2: three rows asked, two shown, the third held back with the token.
    first = split_rows(rows(a, b, c), 3, "t3", None)
    assert first == (["a", "b"], QueryCursor("t3", c, True))
    # The next page opens with the held row, and asked only 2 rows.
    second = split_rows(rows(d, e), 2, "t5", first[1])
    assert second == (["c", "d"], QueryCursor("t5", e, True))
    # An answer short of its limit is the end: everything shown, no cursor.
    assert split_rows(rows(f), 2, "t6", second[1]) == (["e", "f"], None)
    assert split_rows([], 2, "t5", second[1]) == (["e"], None)
    assert split_rows(rows(a, b), 3, "t2", None) == (["a", "b"], None)
    # Full, but the store says nothing follows: the end too.
    assert split_rows(rows(a, b, c), 3, "", None) == (["a", "b", "c"], None)


def test_rows_already_reached_are_not_listed_again() -> None:
    """Jobs created between two pages push listed rows into the next answer (offsets)."""
    a, b, c, d = at(50, "a"), at(49, "b"), at(49, "c"), at(48, "d")
    newer = at(59, "n")
    cursor = QueryCursor("t2", b, True)  # a listed, b held back
    # Two jobs created since: the answer from offset 2 starts with a and b again.
    assert split_rows(rows(a, b, c, d), 4, "t6", cursor) == (["b", "c"], QueryCursor("t6", d, True))
    # Nothing new in a full answer: the page shows the held row, the position stays.
    assert split_rows(rows(newer, a), 2, "t4", cursor) == (["b"], QueryCursor("t4", b, False))
    assert split_rows(rows(b, c), 2, "t6", QueryCursor("t4", b, False)) == (
        [],
        QueryCursor("t6", c, True),
    )


def test_rows_of_other_apps_are_dropped_and_a_dropped_one_still_moves_the_token() -> None:
    a, b = at(50, "a"), at(49, "b")
    junk = [{"id": None, "createdAt": a.created_at}, {"id": "a||b"}, {"id": "x", "createdAt": 5}]
    assert split_rows(rows(a, *junk), 5, "t4", None) == (["a"], None)
    assert split_rows(rows(a, b, junk[0]), 3, "t3", None) == (["a"], QueryCursor("t3", b, True))
    # Another app's row carrying the id of one of ours: the job is listed once.
    copy = {"id": "a", "createdAt": b.created_at}
    assert split_rows(rows(a, copy), 3, "t2", None) == (["a"], None)
    # A page shortened to one row (too large an answer) still moves on by one row.
    assert split_rows(rows(a), 1, "t1", None) == ([], QueryCursor("t1", a, True))


def test_query_filters_and_pages() -> None:
    assert query_for(None, None, 5, None) == {
        "filter": {"EQ": {"kind": "job"}},
        "sort": [{"key": "createdAt", "order": "DESC"}, {"key": "id", "order": "ASC"}],
        "page": {"limit": 5},
    }
    q = query_for("x", "Completed", 10, "20")
    assert q["filter"] == {
        "AND": [{"EQ": {"kind": "job"}}, {"EQ": {"owner": "x"}}, {"EQ": {"status": "Completed"}}]
    }
    assert q["page"] == {"limit": 10, "token": "20"}


def drain(scan: Scan, segments: dict[str, list[list[Any]]]) -> tuple[list[str], list[str]]:
    """(ids in the order the scan gives them, segments in the order it asked for them)."""
    ids: list[str] = []
    read: list[str] = []
    while True:
        wanted = scan.wanted()
        for key in wanted:
            read.append(key)
            scan.add(segments[key])
        if wanted:
            continue
        entry = scan.next()
        if entry is None:
            return ids, read
        ids.append(entry[1])


def test_index_order_continuation_and_duplicates() -> None:
    def scanned(position: list[Any] | None) -> list[str]:
        scan = Scan(position)
        scan.add([[1.0, "a", None], [3.0, "c", "o"], [2.0, "b", None]])
        scan.add([[3.0, "c", "o"], [3.0, "d", None]])  # c again: a recovered entry
        return drain(scan, {})[0]

    assert scanned(None) == ["c", "d", "b", "a"]  # same time: by id
    assert scanned([3.0, "c"]) == ["d", "b", "a"]
    assert scanned([2.0, "b"]) == ["a"]


def test_index_segments_are_read_only_when_they_may_hold_the_next_entry() -> None:
    segments = {
        "s0": [[10.0, "a", None], [12.0, "b", None]],
        "s1": [[13.0, "c", None], [15.0, "d", None], [11.0, "late", None]],
        "s2": [[16.0, "e", None], [18.0, "f", None]],
    }
    scan = Scan(None)
    scan.add([[19.0, "g", None], [17.5, "h", None]])  # the part's open entries
    for key, entries in segments.items():
        scan.add_segment(key, *bounds_of(entries))
    ids, read = [], []
    for _ in range(3):  # a page of three reads only the newest segment
        wanted = scan.wanted()
        read += wanted
        for key in wanted:
            scan.add(segments[key])
        entry = scan.next()
        assert entry is not None
        ids.append(entry[1])
    assert (ids, read) == (["g", "f", "h"], ["s2"])
    rest, more = drain(scan, segments)
    assert ids + rest == ["g", "f", "h", "e", "d", "c", "b", "late", "a"]
    assert more == ["s1", "s0"]

    # The next page, from the cursor after "d": s2 is newer than the cursor, so never read.
    scan = Scan([15.0, "d"])
    for key, entries in segments.items():
        scan.add_segment(key, *bounds_of(entries))
    assert drain(scan, segments) == (["c", "b", "late", "a"], ["s1", "s0"])
    assert bounds_of(segments["s1"]) == [11.0, 15.0]


def test_an_entry_recovered_from_the_stored_job_equals_the_creators() -> None:
    job = new_job(
        "j1", "wait", {}, owner="o", max_attempts=1, run_timeout_seconds=None, now=1763870221.0157
    )
    recovered = Job.from_record(job.to_record())
    assert entry_of(job) == entry_of(recovered) == [1763870221.015, "j1", "o"]


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
