"""The memo of routing decisions on its own: lookups, the bound, the trial."""

from __future__ import annotations

from sidecar.route_memo import MISSING, RouteMemo


def test_a_decision_is_found_by_its_key_none_included() -> None:
    memo = RouteMemo()
    assert memo.get("a") is MISSING
    memo.put("a", "/path")
    memo.put("b", None)
    assert memo.get("a") == "/path"
    assert memo.get("b") is None


def test_a_full_memo_starts_over() -> None:
    memo = RouteMemo(max_entries=2)
    memo.put("a", "/a")
    memo.put("b", "/b")
    memo.put("c", "/c")
    assert memo.get("a") is MISSING
    assert memo.get("c") == "/c"


def test_a_memo_that_finds_half_its_keys_stays_on() -> None:
    memo = RouteMemo(trial=10)
    for n in range(10):
        key = str(n % 5)
        if memo.get(key) is MISSING:
            memo.put(key, "/p")
    assert memo.enabled  # 5 hits in 10
    assert memo.get("0") == "/p"


def test_a_memo_that_rarely_finds_its_keys_turns_off_and_forgets() -> None:
    memo = RouteMemo(trial=10)
    for key in "aabcdefghi":  # 1 hit in 10
        if memo.get(key) is MISSING:
            memo.put(key, "/p")
    assert not memo.enabled
    assert memo.get("a") is MISSING
    memo.put("a", "/p")
    assert memo.get("a") is MISSING
