"""How the sidecar reads --dapr-graceful-shutdown-seconds (daprd's pkg/runtime/config.go)."""

from __future__ import annotations

import pytest

from sidecar.config import parse_config


@pytest.mark.parametrize(
    ("flags", "budget"),
    [((), 5.0), (("7",), 7.0), (("-1",), 5.0), (("-30",), 5.0), (("0",), None)],
)
def test_negative_means_the_default_and_zero_means_no_limit(
    flags: tuple[str, ...], budget: float | None
) -> None:
    argv = ["--app-id", "a"] + (["--dapr-graceful-shutdown-seconds", *flags] if flags else [])
    assert parse_config(argv, {}).graceful_shutdown_seconds == budget


def test_a_value_that_is_not_a_whole_number_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_config(["--app-id", "a", "--dapr-graceful-shutdown-seconds", "2.5"], {})
