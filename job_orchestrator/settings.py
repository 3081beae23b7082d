"""Configuration of one orchestrator replica, read once from the environment and passed in."""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from job_orchestrator.auth import parse_api_keys


class Role(enum.StrEnum):
    """What a replica does, so API and workers scale apart."""

    API = "api"  #: serves HTTP only; never claims jobs
    WORKER = "worker"  #: runs jobs only; the job API answers 503
    BOTH = "both"  #: the default


class SettingsError(ValueError):
    """An environment variable has a value the orchestrator cannot use."""


@dataclass(frozen=True)
class Settings:
    app_id: str = "job-orchestrator"
    app_port: int = 8000
    bind_host: str = "0.0.0.0"
    dapr_grpc_port: int = 50001
    dapr_http_port: int = 3500
    dapr_api_token: str | None = None
    #: APP_API_TOKEN: what the sidecar sends as ``dapr-api-token``; sidecar-only routes need it.
    app_api_token: str | None = None
    #: API key -> owner (API_KEYS or API_KEYS_FILE); empty: the public API is open to all.
    api_keys: Mapping[str, str] = field(default_factory=dict)
    role: Role = Role.BOTH
    #: Name recorded in ``worker``; unique per process so a restarted replica never trusts
    #: a lease it held in a former life.
    replica_name: str = "local"
    state_store: str = "statestore"
    queue_pubsub: str = "jobqueue"
    broadcast_pubsub: str = "jobbroadcast"
    events_topic: str = "job-events"
    default_wait_seconds: float = 5.0
    max_wait_seconds: float = 60.0
    retention_seconds: int = 7 * 24 * 3600
    idempotency_retention_seconds: int = 24 * 3600
    lease_seconds: float = 30.0
    progress_interval_seconds: float = 1.0
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 30.0
    max_takeovers: int = 3
    default_max_attempts: int = 1
    max_body_bytes: int = 256 * 1024
    max_input_bytes: int = 64 * 1024
    #: A handler's result, as compact JSON, at most; a larger one fails the job.
    max_result_bytes: int = 256 * 1024
    #: Requests that may wait at once on this replica; more get 503 + Retry-After.
    max_waiters: int = 20000
    retry_after_seconds: int = 1
    listing_flush_seconds: float = 1.0
    #: A job this replica created that is still New this long after, with nothing heard of it,
    #: is announced again (requeue.py); 0 turns that off.
    requeue_after_seconds: float = 60.0
    #: How long each final event written here is watched for a state-store failure that may
    #: have made the outbox relay give it up; the finals of such a window are announced again
    #: (reannounce.py). 0 turns that off.
    finals_at_risk_seconds: float = 30.0
    #: After SIGTERM, how long running jobs (their deliveries are open requests) may finish.
    shutdown_grace_seconds: int = 10
    #: Plain-function handlers that may run at once (threads, made as needed); keep it at
    #: least jobqueue's ``concurrency``, the jobs a replica takes at once.
    job_threads: int = 32
    #: JOB_HANDLERS: ``module:attribute`` registries of the user's own job types.
    job_handlers: tuple[str, ...] = ()

    @property
    def runs_api(self) -> bool:
        return self.role in (Role.API, Role.BOTH)

    @property
    def runs_worker(self) -> bool:
        return self.role in (Role.WORKER, Role.BOTH)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from ``env`` (Dapr's variable names where Dapr has one)."""
        role_raw = env.get("APP_ENV", Role.BOTH.value).strip().lower()
        try:
            role = Role(role_raw)
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise SettingsError(f"APP_ENV={role_raw!r}: expected one of {allowed}") from None
        host = env.get("HOSTNAME") or socket.gethostname()
        retention = _int(env, "JOB_RETENTION_SECONDS", cls.retention_seconds)
        settings = cls(
            app_id=env.get("APP_ID", cls.app_id),
            app_port=_int(env, "APP_PORT", cls.app_port),
            bind_host=env.get("APP_HOST", cls.bind_host),
            dapr_grpc_port=_int(env, "DAPR_GRPC_PORT", cls.dapr_grpc_port),
            dapr_http_port=_int(env, "DAPR_HTTP_PORT", cls.dapr_http_port),
            dapr_api_token=env.get("DAPR_API_TOKEN") or None,
            app_api_token=env.get("APP_API_TOKEN") or None,
            api_keys=_api_keys(env),
            role=role,
            replica_name=env.get("REPLICA_NAME") or f"{host}-{os.getpid()}",
            state_store=env.get("STATE_STORE_NAME", cls.state_store),
            events_topic=env.get("JOB_EVENTS_TOPIC", cls.events_topic),
            default_wait_seconds=_float(env, "JOB_DEFAULT_WAIT_SECONDS", cls.default_wait_seconds),
            max_wait_seconds=_float(env, "JOB_MAX_WAIT_SECONDS", cls.max_wait_seconds),
            retention_seconds=retention,
            # Unset, it is the default capped at the job retention: lowering that alone works.
            idempotency_retention_seconds=_int(
                env,
                "IDEMPOTENCY_RETENTION_SECONDS",
                min(cls.idempotency_retention_seconds, retention),
            ),
            lease_seconds=_float(env, "JOB_LEASE_SECONDS", cls.lease_seconds),
            progress_interval_seconds=_float(
                env, "JOB_PROGRESS_INTERVAL_SECONDS", cls.progress_interval_seconds
            ),
            retry_backoff_seconds=_float(
                env, "JOB_RETRY_BACKOFF_SECONDS", cls.retry_backoff_seconds
            ),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            max_input_bytes=_int(env, "MAX_INPUT_BYTES", cls.max_input_bytes),
            max_result_bytes=_int(env, "MAX_RESULT_BYTES", cls.max_result_bytes),
            max_waiters=_int(env, "MAX_WAITERS", cls.max_waiters),
            job_threads=_int(env, "JOB_THREADS", cls.job_threads),
            shutdown_grace_seconds=_int(
                env, "JOB_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds
            ),
            listing_flush_seconds=_positive(
                env, "JOB_LISTING_FLUSH_SECONDS", cls.listing_flush_seconds
            ),
            requeue_after_seconds=_float(
                env, "JOB_REQUEUE_AFTER_SECONDS", cls.requeue_after_seconds
            ),
            finals_at_risk_seconds=_float(
                env, "JOB_FINALS_AT_RISK_SECONDS", cls.finals_at_risk_seconds
            ),
            job_handlers=tuple(
                spec.strip() for spec in env.get("JOB_HANDLERS", "").split(",") if spec.strip()
            ),
        )
        if settings.job_threads < 1:
            raise SettingsError(f"JOB_THREADS={settings.job_threads}: expected 1 or more")
        if settings.requeue_after_seconds < 0:
            raise SettingsError(
                f"JOB_REQUEUE_AFTER_SECONDS={settings.requeue_after_seconds:g}: expected 0 (off) "
                "or more"
            )
        if settings.finals_at_risk_seconds < 0:
            raise SettingsError(
                f"JOB_FINALS_AT_RISK_SECONDS={settings.finals_at_risk_seconds:g}: expected 0 "
                "(off) or more"
            )
        if settings.idempotency_retention_seconds > settings.retention_seconds:
            # A key outliving its job would take the job's absence for a creator that died
            # and start the job again under the same id.
            raise SettingsError(
                f"IDEMPOTENCY_RETENTION_SECONDS={settings.idempotency_retention_seconds} is "
                f"longer than JOB_RETENTION_SECONDS={settings.retention_seconds}; a key must "
                "not outlive its job"
            )
        return settings


def _api_keys(env: Mapping[str, str]) -> dict[str, str]:
    """API_KEYS (``key=owner,...``) plus the lines of API_KEYS_FILE; never logged."""
    text = env.get("API_KEYS", "")
    path = env.get("API_KEYS_FILE", "").strip()
    if path:
        try:
            text += "\n" + Path(path).read_text()
        except OSError as exc:
            raise SettingsError(f"API_KEYS_FILE={path!r}: {exc.strerror}") from None
    try:
        return parse_api_keys(text)
    except ValueError as exc:
        raise SettingsError(f"API_KEYS: {exc}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected an integer") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value <= 0:
        raise SettingsError(f"{name}={value:g}: expected a number above 0")
    return value
