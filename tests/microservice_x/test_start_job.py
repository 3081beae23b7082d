"""POST /jobs in-process, invoking a real stand-in orchestrator through real sidecars: what
reaches the orchestrator, and what is refused before anything does.

The stand-in (orchestrator_stub) is registered as `job-orchestrator` and remembers every request
it got, so a test sees the Idempotency-Key as it was handed on, or that nothing was.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio

from microservice_x.app import create_app
from microservice_x.settings import Settings
from tests.conftest import RedisServer
from tests.microservice_x.stack import App, Sidecar, get_json, state_sidecar
from tests.procs import free_port

#: Its own app id, so nothing it writes meets test_api's keys in their shared database.
APP_ID = "microservice-x-start-test"
REDIS_DB = 13
PROBLEM = "application/problem+json"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def sidecar(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    with state_sidecar(
        APP_ID, tmp_path_factory.mktemp("mx-start"), redis_server.host, REDIS_DB
    ) as started:
        yield started


@pytest.fixture(scope="module")
def orchestrator(sidecar: Sidecar) -> Iterator[App]:
    """The stand-in orchestrator and its sidecar, in the name registry of ours."""
    port = free_port()
    orchestrator_sidecar = Sidecar(
        "job-orchestrator", sidecar.components, sidecar.registry, port, log_dir=sidecar.log_dir
    )
    stub = App("tests.microservice_x.orchestrator_stub", orchestrator_sidecar, port)
    try:
        orchestrator_sidecar.start()
        stub.start()
        orchestrator_sidecar.wait_ready()
        yield stub
    finally:
        stub.stop()
        orchestrator_sidecar.stop()


@asynccontextmanager
async def microservice_x(
    sidecar: Sidecar, api_key: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        app_id=APP_ID,
        dapr_http_port=sidecar.http_port,
        dapr_grpc_port=sidecar.grpc_port,
        sidecar_wait_seconds=20,
        invoke_timeout_seconds=5,
        orchestrator_api_key=api_key,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mx") as test_client:
            yield test_client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(sidecar: Sidecar, orchestrator: App) -> AsyncIterator[httpx.AsyncClient]:
    async with microservice_x(sidecar) as test_client:
        yield test_client


def received_keys(orchestrator: App) -> list[str | None]:
    """The Idempotency-Key of each request the orchestrator got, in order."""
    return [r["idempotencyKey"] for r in get_json(f"{orchestrator.url}/received")]


async def documented_titles(client: httpx.AsyncClient, status: int) -> set[str]:
    """The titles of the examples /openapi.json shows for ``status`` of POST /jobs."""
    schema = (await client.get("/openapi.json")).json()
    response = schema["paths"]["/jobs"]["post"]["responses"][str(status)]
    return {e["value"]["title"] for e in response["content"][PROBLEM]["examples"].values()}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == "/jobs"
    return body


async def test_a_job_is_started_with_a_json_body(
    client: httpx.AsyncClient, orchestrator: App
) -> None:
    key = uuid.uuid4().hex
    for content_type in ("application/json", "application/merge-patch+json; charset=utf-8"):
        response = await client.post(
            "/jobs",
            content=b'{"type": "wait", "input": {"seconds": 1}}',
            headers={"content-type": content_type, "Idempotency-Key": key},
        )
        assert response.status_code == 202, response.text
        assert response.json()["owner"] == APP_ID
    assert received_keys(orchestrator).count(key) == 2


async def test_a_body_not_sent_as_json_is_a_415_problem(
    client: httpx.AsyncClient, orchestrator: App
) -> None:
    key = uuid.uuid4().hex
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "json", None):
        headers = {"Idempotency-Key": key}
        if content_type is not None:
            headers["content-type"] = content_type
        response = await client.post(
            "/jobs", content=b'{"type": "wait", "input": {"seconds": 1}}', headers=headers
        )
        problem = assert_problem(response, 415)
        assert response.headers["accept-post"] == "application/json"
        assert problem["title"] in await documented_titles(client, 415)
        sent = repr(content_type) if content_type else "no Content-Type"
        assert problem["detail"] == f"send the body as application/json (it came with {sent})"
    assert_problem(await client.post("/jobs", headers={"Idempotency-Key": key}), 415)
    # Sent as JSON, a body that is no object is invalid, not of the wrong type.
    response = await client.post(
        "/jobs",
        content=b"[1]",
        headers={"content-type": "application/json", "Idempotency-Key": key},
    )
    assert_problem(response, 422)
    assert key not in received_keys(orchestrator)


async def test_the_idempotency_key_is_handed_on_without_the_spaces_around_it(
    client: httpx.AsyncClient, orchestrator: App
) -> None:
    key = uuid.uuid4().hex
    for sent in (f" {key}", f"{key}\t", f" \t{key}  "):
        response = await client.post("/jobs", json={}, headers={"Idempotency-Key": sent})
        assert response.status_code == 202, response.text
    handed_on = [k for k in received_keys(orchestrator) if k is not None and key in k]
    assert handed_on == [key] * 3


@pytest.mark.parametrize(
    "headers",
    [
        [("Idempotency-Key", "one"), ("Idempotency-Key", "two")],
        [("Idempotency-Key", "same"), ("Idempotency-Key", "same")],
        [("Idempotency-Key", " \t ")],
    ],
    ids=["two-keys", "one-key-twice", "blank"],
)
async def test_several_or_blank_idempotency_keys_are_422_problems(
    client: httpx.AsyncClient, orchestrator: App, headers: list[tuple[str, str]]
) -> None:
    before = len(received_keys(orchestrator))
    response = await client.post("/jobs", json={"type": "wait"}, headers=headers)
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "header.Idempotency-Key"
    assert problem["title"] in await documented_titles(client, 422)
    assert len(received_keys(orchestrator)) == before


@pytest.mark.parametrize("api_key", ["unknown-key", "other-owner-key"])
async def test_refused_credentials_of_its_own_are_a_502_not_the_callers_401_or_403(
    sidecar: Sidecar, orchestrator: App, api_key: str
) -> None:
    """A wrong ORCHESTRATOR_API_KEY is microservice-x's configuration: relaying the
    orchestrator's 401 or 403 would ask its caller for credentials it cannot give."""
    async with microservice_x(sidecar, api_key) as misconfigured:
        response = await misconfigured.post("/jobs", json={"type": "wait"})
        problem = assert_problem(response, 502)
        assert "www-authenticate" not in response.headers
        assert "ORCHESTRATOR_API_KEY" in problem["detail"]
        assert problem["title"] in await documented_titles(misconfigured, 502)
