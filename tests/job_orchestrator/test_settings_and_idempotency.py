"""Configuration from the environment, and idempotency fingerprints."""

from __future__ import annotations

import pytest

from job_orchestrator.idempotency import fingerprint, record_key
from job_orchestrator.settings import Role, Settings, SettingsError


def test_defaults_and_overrides() -> None:
    default = Settings.from_env({})
    assert (default.app_port, default.role, default.max_wait_seconds) == (8000, Role.BOTH, 60.0)
    assert default.retention_seconds == 7 * 24 * 3600
    assert default.idempotency_retention_seconds == 24 * 3600
    s = Settings.from_env({"APP_PORT": "9000", "APP_ENV": "Worker", "DAPR_GRPC_PORT": "1234"})
    assert (s.app_port, s.role, s.dapr_grpc_port) == (9000, Role.WORKER, 1234)
    assert s.runs_worker and not s.runs_api
    assert default.job_handlers == ()
    handlers = Settings.from_env({"JOB_HANDLERS": " a.b:jobs, ,c:reg "}).job_handlers
    assert handlers == ("a.b:jobs", "c:reg")
    assert default.listing_flush_seconds == 1.0
    assert Settings.from_env({"JOB_LISTING_FLUSH_SECONDS": "0.25"}).listing_flush_seconds == 0.25
    assert (default.job_threads, default.max_result_bytes) == (32, 256 * 1024)
    limits = Settings.from_env({"JOB_THREADS": "64", "MAX_RESULT_BYTES": "1048576"})
    assert (limits.job_threads, limits.max_result_bytes) == (64, 1048576)
    assert default.requeue_after_seconds == 60.0
    assert Settings.from_env({"JOB_REQUEUE_AFTER_SECONDS": "0"}).requeue_after_seconds == 0
    assert default.finals_at_risk_seconds == 30.0
    off = Settings.from_env({"JOB_FINALS_AT_RISK_SECONDS": "0"})
    assert off.finals_at_risk_seconds == 0


@pytest.mark.parametrize(
    "env",
    [
        {"APP_ENV": "batch"},
        {"APP_PORT": "eighty"},
        {"JOB_LISTING_FLUSH_SECONDS": "0"},
        {"JOB_LISTING_FLUSH_SECONDS": "soon"},
        {"JOB_THREADS": "0"},
        {"MAX_RESULT_BYTES": "lots"},
        {"JOB_REQUEUE_AFTER_SECONDS": "-1"},
        {"JOB_REQUEUE_AFTER_SECONDS": "a minute"},
        {"JOB_FINALS_AT_RISK_SECONDS": "-5"},
        {"JOB_FINALS_AT_RISK_SECONDS": "half a minute"},
        # A key outliving its job would start the job again once the job expired.
        {"IDEMPOTENCY_RETENTION_SECONDS": "3600", "JOB_RETENTION_SECONDS": "600"},
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_a_lower_job_retention_alone_lowers_the_idempotency_retention_with_it() -> None:
    """Unset, the key retention is its default capped at the job retention (setting only the
    job retention stopped the start)."""
    assert Settings.from_env({"JOB_RETENTION_SECONDS": "600"}).idempotency_retention_seconds == 600
    assert Settings.from_env({}).idempotency_retention_seconds == 24 * 3600
    given = {"JOB_RETENTION_SECONDS": "600", "IDEMPOTENCY_RETENTION_SECONDS": "60"}
    assert Settings.from_env(given).idempotency_retention_seconds == 60


def test_fingerprint_ignores_key_order_and_record_key_is_safe() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    key = record_key("weird||key with spaces")
    assert "||" not in key and key.startswith("idem-") and len(key) == 69
