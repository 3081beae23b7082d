"""Reading a W3C traceparent: usable ones are kept as sent, anything else starts a new trace."""

from __future__ import annotations

import pytest

from dapr_support.tracecontext import new_traceparent, trace_id, valid_traceparent

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_version_00_traceparent_is_kept() -> None:
    assert valid_traceparent(GOOD) == GOOD
    assert valid_traceparent(f" {GOOD} ") == GOOD
    assert trace_id(GOOD) == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        GOOD.upper(),  # hex must be lowercase
        GOOD + "-extra",  # version 00 has exactly four parts
        "01" + GOOD[2:],  # only version 00 is taken
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # all-zero parent id
    ],
)
def test_anything_else_is_unusable(value: str | None) -> None:
    assert valid_traceparent(value) is None


def test_new_traces_are_valid_sampled_and_distinct() -> None:
    made = {new_traceparent() for _ in range(50)}
    assert len({trace_id(t) for t in made}) == 50
    assert all(valid_traceparent(t) == t and t.endswith("-01") for t in made)
