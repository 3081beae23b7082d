"""Security configuration: API keys read once from the environment, and the keyless default."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from job_orchestrator.auth import ApiKeys, parse_api_keys
from job_orchestrator.errors import Unauthorized
from job_orchestrator.settings import Settings, SettingsError
from tests.job_orchestrator.inprocess import InProcess


def test_keys_from_the_variable_and_the_file(tmp_path: Path) -> None:
    listed = tmp_path / "keys"
    listed.write_text("# portal users\nk3 = portal\n\n")
    settings = Settings.from_env(
        {
            "API_KEYS": "k1=microservice-x, k2=portal",
            "API_KEYS_FILE": str(listed),
            "APP_API_TOKEN": "app",
            "MAX_WAITERS": "7",
            "MAX_INPUT_BYTES": "100",
        }
    )
    assert settings.api_keys == {"k1": "microservice-x", "k2": "portal", "k3": "portal"}
    assert (settings.app_api_token, settings.max_waiters, settings.max_input_bytes) == (
        "app",
        7,
        100,
    )
    defaults = Settings.from_env({})
    assert defaults.api_keys == {} and defaults.app_api_token is None
    assert defaults.max_waiters == 20000


@pytest.mark.parametrize(
    "env",
    [
        {"API_KEYS": "just-a-key"},
        {"API_KEYS": "k1=a,k1=b"},
        {"API_KEYS": "=owner"},
        {"API_KEYS_FILE": "/nonexistent/keys"},
    ],
)
def test_bad_key_configuration_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert "k1" not in str(raised.value).replace("API_KEYS", "")  # keys are never echoed


def test_lookup_by_either_header() -> None:
    keys = ApiKeys(parse_api_keys("k1=alice"))
    assert keys.owner("k1", None) == keys.owner(None, "k1") == "alice"
    assert keys.owner_from_headers([(b"authorization", b"bearer k1")]) == "alice"
    assert keys.owner_from_headers([(b"x-api-key", b"k1")]) == "alice"
    for headers in ([], [(b"x-api-key", b"k2")], [(b"authorization", b"Basic k1")]):
        with pytest.raises(Unauthorized):
            keys.owner_from_headers(headers)
    assert ApiKeys({}).owner_from_headers([]) is None


def test_without_keys_the_api_is_open_and_documents_no_security(inproc: InProcess) -> None:
    schema = inproc.client.get("/openapi.json").json()
    assert "securitySchemes" not in schema["components"]
    assert all("security" not in op for ops in schema["paths"].values() for op in ops.values())
    created = inproc.client.post("/jobs", json={"type": "wait", "input": {"seconds": 0}})
    assert created.status_code == 202
    assert created.json()["owner"] is None
    job_id = created.json()["id"]
    assert uuid.UUID(job_id).version == 4  # random, so unguessable
    assert inproc.client.get(f"/jobs/{job_id}?wait=2").status_code == 200
