"""Settings come from Dapr's environment names, with the documented defaults."""

from __future__ import annotations

import pytest

from microservice_x.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.app_id == "microservice-x"
    assert settings.app_port == 8001
    assert settings.app_host == "0.0.0.0"
    assert settings.dapr_http_url == "http://127.0.0.1:3500"
    assert settings.dapr_grpc_address == "127.0.0.1:50001"
    assert settings.dapr_api_token is None
    assert settings.state_store == "statestore"
    assert settings.orchestrator_app_id == "job-orchestrator"
    assert settings.view_retention_seconds == 7 * 24 * 3600


def test_view_retention_may_be_set_or_turned_off() -> None:
    assert Settings.from_env({"VIEW_RETENTION_SECONDS": "60"}).view_retention_seconds == 60
    assert Settings.from_env({"VIEW_RETENTION_SECONDS": "0"}).view_retention_seconds is None


def test_dapr_environment_is_read() -> None:
    settings = Settings.from_env(
        {
            "APP_ID": "mx-2",
            "APP_PORT": "9001",
            "APP_HOST": "127.0.0.1",
            "DAPR_HTTP_PORT": "3600",
            "DAPR_GRPC_PORT": "50100",
            "DAPR_API_TOKEN": "secret",
            "LOG_LEVEL": "debug",
        }
    )
    assert (settings.app_id, settings.app_host, settings.app_port) == ("mx-2", "127.0.0.1", 9001)
    assert settings.dapr_http_url == "http://127.0.0.1:3600"
    assert settings.dapr_grpc_address == "127.0.0.1:50100"
    assert settings.dapr_api_token == "secret"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APP_PORT": "eighty"}, "APP_PORT must be a port number"),
        ({"DAPR_HTTP_PORT": "70000"}, "DAPR_HTTP_PORT must be between"),
        ({"INVOKE_TIMEOUT_SECONDS": "0"}, "must be positive"),
        ({"VIEW_RETENTION_SECONDS": "1.5"}, "whole number of seconds"),
        ({"VIEW_RETENTION_SECONDS": "-1"}, "0 \\(keep forever\\) or more"),
    ],
)
def test_bad_values_are_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
