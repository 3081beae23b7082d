"""Configuration of microservice-x, read once from the environment `dapr run` gives an app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name} must be between 1 and 65535, got {port}")
    return port


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def _retention(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    """Whole seconds; 0 means keep forever (None)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number of seconds, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be 0 (keep forever) or more, got {value}")
    return value or None


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know about itself and its sidecar."""

    app_id: str = "microservice-x"
    #: Where uvicorn listens; all interfaces so kubelet probes and a Service reach the pod (as
    #: the orchestrator does); tests set APP_HOST=127.0.0.1.
    app_host: str = "0.0.0.0"
    app_port: int = 8001
    dapr_host: str = "127.0.0.1"
    dapr_http_port: int = 3500
    dapr_grpc_port: int = 50001
    dapr_api_token: str | None = None
    #: APP_API_TOKEN: the sidecar sends it as ``dapr-api-token``; event routes require it.
    app_api_token: str | None = None
    #: ORCHESTRATOR_API_KEY: sent as X-API-Key when the orchestrator has API keys configured.
    orchestrator_api_key: str | None = None
    state_store: str = "statestore"
    orchestrator_app_id: str = "job-orchestrator"
    #: How long POST /jobs waits for the orchestrator's answer through the sidecar.
    invoke_timeout_seconds: float = 10.0
    #: How long startup waits for the sidecar's outbound health (the SDK's own wait is 60 s).
    sidecar_wait_seconds: float = 60.0
    #: VIEW_RETENTION_SECONDS: a job view expires this long after the last event that changed
    #: it, as the orchestrator keeps a final job for 7 days (0 in the environment: never).
    view_retention_seconds: int | None = 7 * 24 * 3600
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from Dapr's environment names (APP_ID, DAPR_HTTP_PORT, ...)."""
        return cls(
            app_id=env.get("APP_ID", "").strip() or cls.app_id,
            app_host=env.get("APP_HOST", "").strip() or cls.app_host,
            app_port=_port(env, "APP_PORT", cls.app_port),
            dapr_host=env.get("DAPR_RUNTIME_HOST", "").strip() or cls.dapr_host,
            dapr_http_port=_port(env, "DAPR_HTTP_PORT", cls.dapr_http_port),
            dapr_grpc_port=_port(env, "DAPR_GRPC_PORT", cls.dapr_grpc_port),
            dapr_api_token=env.get("DAPR_API_TOKEN") or None,
            app_api_token=env.get("APP_API_TOKEN") or None,
            orchestrator_api_key=env.get("ORCHESTRATOR_API_KEY") or None,
            # STATE_STORE_NAME as the orchestrator names it; STATE_STORE, its earlier name, too.
            state_store=(env.get("STATE_STORE_NAME") or env.get("STATE_STORE") or "").strip()
            or cls.state_store,
            orchestrator_app_id=env.get("ORCHESTRATOR_APP_ID", "").strip()
            or cls.orchestrator_app_id,
            invoke_timeout_seconds=_positive_float(
                env, "INVOKE_TIMEOUT_SECONDS", cls.invoke_timeout_seconds
            ),
            sidecar_wait_seconds=_positive_float(
                env, "DAPR_HEALTH_TIMEOUT", cls.sidecar_wait_seconds
            ),
            view_retention_seconds=_retention(
                env, "VIEW_RETENTION_SECONDS", cls.view_retention_seconds
            ),
            log_level=(env.get("LOG_LEVEL", "").strip() or cls.log_level).upper(),
        )

    @property
    def dapr_http_url(self) -> str:
        return f"http://{self.dapr_host}:{self.dapr_http_port}"

    @property
    def dapr_grpc_address(self) -> str:
        return f"{self.dapr_host}:{self.dapr_grpc_port}"
