"""RFC 7240 Prefer parsing."""

from __future__ import annotations

import pytest

from job_orchestrator.prefer import Preferences, parse_prefer


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], Preferences()),
        (["wait=10"], Preferences(wait=10.0)),
        (["respond-async, wait=2.5"], Preferences(wait=2.5, respond_async=True)),
        (["respond-async", "wait=3"], Preferences(wait=3.0, respond_async=True)),
        (['WAIT="4"; foo=bar'], Preferences(wait=4.0)),
        (["wait=soon", "wait=-1", "handling=lenient"], Preferences()),
        (["wait=1, wait=9"], Preferences(wait=1.0)),
    ],
)
def test_parse_prefer(headers: list[str], expected: Preferences) -> None:
    assert parse_prefer(headers) == expected


def test_preference_applied() -> None:
    assert Preferences(wait=10).applied(5.0, answered_async=False) == "wait=5"
    assert Preferences(respond_async=True).applied(None, answered_async=True) == "respond-async"
    assert Preferences().applied(None, answered_async=True) == ""
    both = Preferences(wait=5, respond_async=True)
    assert both.applied(5.0, answered_async=True) == "respond-async, wait=5"
    # A 200 with the final job did not respond asynchronously (RFC 7240 §3: only honoured ones).
    assert both.applied(5.0, answered_async=False) == "wait=5"
    assert Preferences(respond_async=True).applied(None, answered_async=False) == ""
