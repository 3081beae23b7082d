"""With DAPR_API_TOKEN on the sidecar, the service's calls carry the token from its settings.

The SDK reads DAPR_API_TOKEN once at import; this process imported it without one, so these
tests show the token really comes from Settings (and that a missing one fails, not hangs).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from microservice_x.app import create_app
from microservice_x.settings import Settings
from tests.conftest import RedisServer
from tests.microservice_x.stack import Sidecar, cloud_event, job_data, state_sidecar

APP_ID = "microservice-x-token-test"
TOKEN = "s3cret-token"
#: This module's own Redis database (see write_components).
REDIS_DB = 14

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def sidecar(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    base = tmp_path_factory.mktemp("mx-token")
    token = {"DAPR_API_TOKEN": TOKEN}
    with state_sidecar(APP_ID, base, redis_server.host, REDIS_DB, token) as started:
        yield started


def settings_for(sidecar: Sidecar, token: str | None) -> Settings:
    return Settings(
        app_id=APP_ID,
        dapr_http_port=sidecar.http_port,
        dapr_grpc_port=sidecar.grpc_port,
        dapr_api_token=token,
        sidecar_wait_seconds=20,
        invoke_timeout_seconds=5,
    )


@pytest_asyncio.fixture(loop_scope="module")
async def client_with(
    request: pytest.FixtureRequest, sidecar: Sidecar
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(sidecar, request.param))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mx") as client:
            yield client


def created_event() -> tuple[str, dict[str, object]]:
    job_id = uuid.uuid4().hex
    return job_id, cloud_event(job_id, "job.created", job_data(job_id, "job.created", 1, APP_ID))


@pytest.mark.parametrize("client_with", [TOKEN], indirect=True)
async def test_state_calls_carry_the_token_from_settings(client_with: httpx.AsyncClient) -> None:
    job_id, event = created_event()
    answer = await client_with.post("/events/jobs", json=event)
    assert answer.json() == {"status": "SUCCESS"}
    assert (await client_with.get(f"/jobs/{job_id}")).json()["status"] == "New"
    # Invocation goes through the sidecar's HTTP API with the token too: not a 401, but the
    # sidecar's own "no such app" (this stack has no job-orchestrator).
    response = await client_with.post("/jobs", json={"type": "wait"})
    assert response.status_code == 503
    assert "ERR_DIRECT_INVOKE" in response.json()["detail"]


@pytest.mark.parametrize("client_with", [None], indirect=True)
async def test_without_the_token_the_store_is_unavailable(client_with: httpx.AsyncClient) -> None:
    job_id, event = created_event()
    assert (await client_with.post("/events/jobs", json=event)).json() == {"status": "RETRY"}
    response = await client_with.get(f"/jobs/{job_id}")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
