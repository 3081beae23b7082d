"""APP_API_TOKEN and DAPR_API_TOKEN on microservice-x, both processes started as `dapr run` does.

The sidecar delivers events with the app token; anyone else posting to the event routes is
refused, while the public API stays open.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from microservice_x.settings import Settings
from tests.conftest import RedisServer
from tests.microservice_x.stack import (
    MX,
    App,
    Sidecar,
    cloud_event,
    http,
    job_data,
    wait_for,
    write_components,
)
from tests.procs import free_port

DAPR_TOKEN = "dapr-" + uuid.uuid4().hex
APP_TOKEN = "app-" + uuid.uuid4().hex
TOKENS = {"DAPR_API_TOKEN": DAPR_TOKEN, "APP_API_TOKEN": APP_TOKEN}
#: This module's own Redis database (see write_components).
REDIS_DB = 15


@pytest.fixture(scope="module")
def app(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    base = tmp_path_factory.mktemp("mx-security")
    components = write_components(base / "components", redis_server.host, REDIS_DB)
    port = free_port()
    sidecar = Sidecar(
        MX, components, base / "registry", app_port=port, extra_env=TOKENS, log_dir=base
    ).start()
    started = App("microservice_x", sidecar, port, extra_env=TOKENS)
    try:
        started.start()
        sidecar.wait_ready()
        yield started
    finally:
        started.stop()
        sidecar.stop()


@pytest.fixture(scope="module")
def orchestrator_sidecar(app: App, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """A sidecar with the orchestrator's app id, the only app the components let publish job
    events (no app behind it)."""
    base = tmp_path_factory.mktemp("mx-security-orchestrator")
    sidecar = Sidecar(
        "job-orchestrator",
        app.sidecar.components,
        app.sidecar.registry,
        extra_env={"DAPR_API_TOKEN": DAPR_TOKEN},
        log_dir=base,
    ).start()
    yield sidecar
    sidecar.stop()


def event() -> tuple[str, dict[str, object]]:
    job_id = uuid.uuid4().hex
    return job_id, cloud_event(job_id, "job.created", job_data(job_id, "job.created", 1))


def test_events_from_the_sidecar_are_applied(app: App, orchestrator_sidecar: Sidecar) -> None:
    job_id, created = event()
    path = "/v1.0/publish/pubsub/job-events"
    kind = "application/cloudevents+json"
    token = {"dapr-api-token": DAPR_TOKEN}
    # The sidecar itself wants DAPR_API_TOKEN from its callers.
    assert http("POST", app.sidecar.url + path, created, content_type=kind)[0] == 401
    # Even with it, microservice-x may not publish job events (components/pubsub.yaml).
    status, _, body = http(
        "POST", app.sidecar.url + path, created, content_type=kind, headers=token
    )
    assert (status, body["errorCode"]) == (403, "ERR_PUBSUB_FORBIDDEN"), body
    status, _, body = http(
        "POST", orchestrator_sidecar.url + path, created, content_type=kind, headers=token
    )
    assert status == 204, body
    # Delivered with APP_API_TOKEN, stored through the SDK with DAPR_API_TOKEN.
    wait_for(lambda: http("GET", f"{app.url}/jobs/{job_id}")[0] == 200, what="the event applied")


def test_event_routes_refuse_callers_without_the_app_token(app: App) -> None:
    job_id, created = event()
    for route in ("/events/jobs", "/events/dead-letters"):
        for headers in ({}, {"dapr-api-token": "wrong"}, {"dapr-api-token": DAPR_TOKEN}):
            status, got, body = http("POST", f"{app.url}{route}", created, headers=headers)
            assert status == 401, body
            assert got["content-type"] == "application/problem+json"
    assert http("GET", f"{app.url}/jobs/{job_id}")[0] == 404  # nothing was applied
    status, _, body = http(
        "POST", f"{app.url}/events/jobs", created, headers={"dapr-api-token": APP_TOKEN}
    )
    assert (status, body) == (200, {"status": "SUCCESS"})
    # The public API needs no token.
    assert http("GET", f"{app.url}/jobs/{job_id}")[0] == 200
    assert http("GET", f"{app.url}/healthz")[0] == 200


def test_settings_read_the_tokens_and_the_orchestrator_key() -> None:
    settings = Settings.from_env({**TOKENS, "ORCHESTRATOR_API_KEY": "k1"})
    assert settings.app_api_token == APP_TOKEN
    assert settings.dapr_api_token == DAPR_TOKEN
    assert settings.orchestrator_api_key == "k1"
    assert Settings.from_env({}).orchestrator_api_key is None
