"""Listing helpers: cursors, the query, index ordering."""

from __future__ import annotations

import pytest

from job_orchestrator.index import directory_key, minute_of, part_key
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
