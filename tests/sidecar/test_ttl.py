"""A publish's TTL as contrib's metadata.TryGetTTL reads it (and ApplyMetadata ignores errors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sidecar import cloudevents
from sidecar.ttl import go_parse_duration_ns, message_ttl

NOW = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("metadata", "seconds"),
    [
        ({"ttl": "10s"}, 10),
        ({"TTL": "1m"}, 60),
        ({"ttlInSeconds": "90"}, 90),
        ({"TTLINSECONDS": "+7"}, 7),
        ({"ttl": "1h30m"}, 5400),
        ({"ttl": "1.5s"}, 1.5),
        ({"ttl": "0"}, 0),
        ({"ttl": "-5s"}, 0),  # a negative duration is 0
        ({"ttl": "5", "ttlInSeconds": "9"}, 5),  # ttl wins
    ],
)
def test_a_go_duration_or_whole_seconds(metadata: dict[str, str], seconds: float) -> None:
    assert message_ttl(metadata) == timedelta(seconds=seconds)


def test_seconds_beyond_int64_nanoseconds_are_the_longest_duration() -> None:
    longest = timedelta(microseconds=(2**63 - 1) // 1000)
    assert message_ttl({"ttl": "9223372036854775807"}) == longest
    # Go's int64 product wraps; where it wraps to a positive value, that is the TTL.
    assert message_ttl({"ttl": "18446744074"}) == timedelta(microseconds=290448)


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"ttl": ""},
        {"ttl": "", "ttlInSeconds": "5"},  # an empty ttl hides ttlInSeconds, as in contrib
        {"ttlInSeconds": "-5"},
        {"ttlInSeconds": "00"},  # no duration, and 0 seconds is refused
        {"ttlInSeconds": "abc"},
        {"ttlInSeconds": " 5"},
        {"ttl": "1."},
        {"ttl": "2562048h"},  # beyond int64 nanoseconds
        {"ttlInSeconds": "9223372036854775808"},  # beyond int64
    ],
)
def test_what_try_get_ttl_refuses_sets_no_ttl(metadata: dict[str, str]) -> None:
    assert message_ttl(metadata) is None


def test_a_zero_ttl_has_expired_by_delivery() -> None:
    event: dict[str, object] = {}
    cloudevents.apply_ttl(event, {"ttl": "0"}, now=NOW)
    assert event["expiration"] == "2026-01-02T03:04:05Z"  # whole seconds, as Go formats it
    assert cloudevents.has_expired(event, now=NOW)


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("0", 0), ("-0", 0), ("+1s", 10**9), (".5ms", 500_000), ("1h2m3s4ms5us6ns", 3723004005006)],
)
def test_go_parse_duration(text: str, nanos: int) -> None:
    assert go_parse_duration_ns(text) == nanos


@pytest.mark.parametrize("text", ["", "5", "s", "1 s", "1x", ".s", "-", "1.2.3s"])
def test_go_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        go_parse_duration_ns(text)
