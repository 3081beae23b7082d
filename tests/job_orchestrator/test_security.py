"""API keys bound to owners, the sidecar's tokens, and the limits that protect a replica.

One real sidecar started with DAPR_API_TOKEN and APP_API_TOKEN, and the app configured with both
tokens, two API keys and small limits. Jobs only run if the sidecar's deliveries carry the app
token and the app's SDK calls carry the API token, so every test here also shows both work.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess, serve_inprocess

DAPR_TOKEN = "dapr-token-" + uuid.uuid4().hex
APP_TOKEN = "app-token-" + uuid.uuid4().hex
ALICE = {"X-API-Key": "key-alice-" + uuid.uuid4().hex}
BOB = {"X-API-Key": "key-bob-" + uuid.uuid4().hex}
MAX_WAIT = 2.0
MAX_WAITERS = 2
MAX_INPUT = 512


@pytest.fixture(scope="module")
def secured(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcess]:
    keys = {ALICE["X-API-Key"]: "alice", BOB["X-API-Key"]: "bob"}
    with contextlib.ExitStack() as stack:
        # The sidecar process inherits these (as `dapr run` gives them); undone once it started.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DAPR_API_TOKEN", DAPR_TOKEN)
            env.setenv("APP_API_TOKEN", APP_TOKEN)
            served = stack.enter_context(
                serve_inprocess(
                    redis_server.host,
                    tmp_path_factory.mktemp("secured"),
                    dapr_api_token=DAPR_TOKEN,
                    app_api_token=APP_TOKEN,
                    api_keys=keys,
                    max_wait_seconds=MAX_WAIT,
                    max_waiters=MAX_WAITERS,
                    max_input_bytes=MAX_INPUT,
                )
            )
        yield served


@pytest.fixture
def client(secured: InProcess) -> httpx.Client:
    return secured.client


def start(client: httpx.Client, headers: dict[str, str], seconds: float, **body: Any) -> Any:
    response = client.post(
        "/jobs", json={"type": "wait", "input": {"seconds": seconds}, **body}, headers=headers
    )
    assert response.status_code == 202, response.text
    return response.json()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_without_a_valid_key_the_api_answers_401(client: httpx.Client) -> None:
    job = start(client, ALICE, 0)
    for headers in ({}, {"X-API-Key": "nope"}, {"Authorization": "Bearer nope"}):
        for method, path in [
            ("POST", "/jobs"),
            ("POST", "/Jobs/StartJobWithTimeout"),
            ("GET", "/jobs"),
            ("GET", f"/jobs/{job['id']}"),
            ("GET", f"/jobs/{job['id']}?wait=2"),  # the long-poll fast path
            ("POST", f"/jobs/{job['id']}/cancel"),
            ("DELETE", f"/jobs/{job['id']}"),
        ]:
            body = {"type": "wait"} if method == "POST" else None
            response = client.request(method, path, json=body, headers=headers)
            assert_problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
    # Public without a key: health and the documentation.
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200  # probes carry no key
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get(f"/jobs/{job['id']}", headers=ALICE).status_code == 200


def test_a_job_belongs_to_the_key_owner_and_runs(client: httpx.Client) -> None:
    response = client.post(
        "/Jobs/StartJobWithTimeout",
        json={"type": "wait", "input": {"seconds": 0.1}, "timeoutSeconds": MAX_WAIT},
        headers={"Authorization": f"Bearer {ALICE['X-API-Key']}"},
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["owner"], job["status"]) == ("alice", "Completed")
    # Naming one's own owner is fine; naming another is refused and creates nothing.
    assert start(client, ALICE, 0, owner="alice")["owner"] == "alice"
    body = assert_problem(
        client.post("/jobs", json={"type": "wait", "owner": "bob"}, headers=ALICE), 403
    )
    assert "alice" in body["detail"]


def test_another_owners_job_is_404_everywhere(client: httpx.Client) -> None:
    done = client.post(
        "/Jobs/StartJobWithTimeout",
        json={"type": "wait", "input": {"seconds": 0}, "timeoutSeconds": MAX_WAIT},
        headers=ALICE,
    ).json()
    running = start(client, ALICE, 5)
    unknown = str(uuid.uuid4())
    for job_id in (done["id"], running["id"], unknown):
        for method, path in [
            ("GET", f"/jobs/{job_id}"),
            ("GET", f"/jobs/{job_id}?wait=2"),
            ("GET", f"/jobs/{job_id}/result"),
            ("DELETE", f"/jobs/{job_id}/result"),
            ("GET", f"/jobs/{job_id}/events"),
            ("POST", f"/jobs/{job_id}/cancel"),
            ("DELETE", f"/jobs/{job_id}"),
        ]:
            body = assert_problem(client.request(method, path, headers=BOB), 404)
            assert body["title"] == "Job not found"
    # Bob's attempts changed nothing: Alice's jobs are intact and not canceled.
    assert client.get(f"/jobs/{done['id']}/result", headers=ALICE).json() == {"waitedSeconds": 0}
    mine = client.get(f"/jobs/{running['id']}", headers=ALICE).json()
    assert mine["status"] in ("New", "InProgress") and not mine["cancelRequested"]
    with client.stream("GET", f"/jobs/{running['id']}/events", headers=ALICE) as stream:
        assert stream.status_code == 200
    assert client.delete(f"/jobs/{running['id']}", headers=ALICE).status_code == 204


def test_listing_shows_only_the_callers_jobs(client: httpx.Client) -> None:
    alice_job = start(client, ALICE, 0)
    bob_job = start(client, BOB, 0)

    def ids(headers: dict[str, str], query: str = "") -> set[str]:
        response = client.get(f"/jobs?limit=100{query}", headers=headers)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    deadline = time.monotonic() + 10
    while alice_job["id"] not in ids(ALICE) and time.monotonic() < deadline:
        time.sleep(0.1)  # the listing index is flushed about once a second
    assert alice_job["id"] in ids(ALICE)
    assert bob_job["id"] not in ids(ALICE)
    assert {i["owner"] for i in client.get("/jobs", headers=BOB).json()["items"]} == {"bob"}
    assert ids(BOB, "&owner=alice") == set()


def test_idempotency_keys_are_per_owner(client: httpx.Client) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = start(client, {**ALICE, **key}, 0)
    # A replay answers the job as it is now (200 once it completed).
    again = client.post(
        "/jobs", json={"type": "wait", "input": {"seconds": 0}}, headers={**ALICE, **key}
    )
    assert again.headers["idempotent-replayed"] == "true"
    other = start(client, {**BOB, **key}, 0)
    assert first["id"] == again.json()["id"]
    assert other["id"] != first["id"] and other["owner"] == "bob"


def test_openapi_offers_authorize(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["Bearer"]["scheme"] == "bearer"
    operation = schema["paths"]["/jobs/{job_id}"]["get"]
    assert {"ApiKey": []} in operation["security"] and {"Bearer": []} in operation["security"]
    assert "401" in operation["responses"]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "security" not in schema["paths"]["/readyz"]["get"]


def test_sidecar_routes_need_the_app_token(client: httpx.Client) -> None:
    for headers in ({}, {"dapr-api-token": "wrong"}, ALICE):
        assert_problem(client.get("/dapr/subscribe", headers=headers), 401)
        assert_problem(client.post("/internal/jobs/changed", content=b"{}", headers=headers), 401)
    token = {"dapr-api-token": APP_TOKEN}
    assert client.get("/dapr/subscribe", headers=token).status_code == 200
    answer = client.post("/internal/jobs/changed", content=b"{}", headers=token)
    assert answer.json() == {"status": "DROP"}


def test_input_and_body_caps(client: httpx.Client, secured: InProcess) -> None:
    big = {"type": "wait", "input": {"seconds": 0, "pad": "x" * MAX_INPUT}}
    body = assert_problem(client.post("/jobs", json=big, headers=ALICE), 413)
    assert body["title"] == "Job input too large"
    huge = {"type": "wait", "input": {"pad": "x" * secured.settings.max_body_bytes}}
    body = assert_problem(client.post("/jobs", json=huge, headers=ALICE), 413)
    assert body["title"] == "Request body too large"


def test_waits_are_capped(client: httpx.Client) -> None:
    began = time.monotonic()
    response = client.post(
        "/Jobs/StartJobWithTimeout",
        json={"type": "wait", "input": {"seconds": 30}, "timeoutSeconds": 1e9},
        headers=ALICE,
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    response = client.get(f"/jobs/{job_id}?wait=1e9", headers=ALICE)
    assert response.status_code == 200 and response.headers["retry-after"]
    assert time.monotonic() - began < 2 * MAX_WAIT + 3
    client.delete(f"/jobs/{job_id}", headers=ALICE)


def test_waiters_beyond_the_cap_get_503(client: httpx.Client, secured: InProcess) -> None:
    job = start(client, ALICE, 30)
    idem = {"Idempotency-Key": uuid.uuid4().hex}
    url = f"{secured.replica.url}/jobs/{job['id']}?wait={MAX_WAIT}"

    def hold() -> None:
        with httpx.Client(headers=ALICE, timeout=30) as own:
            own.get(url)

    holders = [threading.Thread(target=hold) for _ in range(MAX_WAITERS)]
    for holder in holders:
        holder.start()
    try:
        # Both holders are registered (their slot follows one state read); a short probe could
        # still take a free slot, but for 0.2 s at most, and once both are held it is refused.
        deadline = time.monotonic() + MAX_WAIT
        while client.get("/healthz").json()["waitingRequests"] < MAX_WAITERS:
            assert time.monotonic() < deadline, "the holders never started waiting"
            time.sleep(0.02)
        probe = client.get(f"/jobs/{job['id']}?wait=0.2", headers=ALICE)
        while probe.status_code != 503 and time.monotonic() < deadline:
            probe = client.get(f"/jobs/{job['id']}?wait=0.2", headers=ALICE)
        assert_problem(probe, 503)
        assert probe.headers["retry-after"] == "1"
        waiting = {"type": "wait", "input": {"seconds": 0}}
        refused = [
            client.post("/jobs", json=waiting, headers={**ALICE, **idem, "Prefer": "wait=2"}),
            client.post("/jobs", json=waiting, headers={**ALICE, "Prefer": "wait=2"}),
            client.post(
                "/Jobs/StartJobWithTimeout", json={**waiting, "timeoutSeconds": 2}, headers=ALICE
            ),
            client.get(f"/jobs/{job['id']}/events", headers=ALICE),
        ]
        for response in refused:
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "1"
        # Requests that do not wait are still served.
        assert client.post("/jobs", json=waiting, headers=ALICE).status_code == 202
        assert client.get(f"/jobs/{job['id']}", headers=ALICE).status_code == 200
    finally:
        for holder in holders:
            holder.join(timeout=2 * MAX_WAIT)
    response = client.get(f"/jobs/{job['id']}?wait=0.2", headers=ALICE)
    assert response.status_code == 200
    # The refused request left nothing behind: its Idempotency-Key is free to use now.
    retried = client.post("/jobs", json=waiting, headers={**ALICE, **idem, "Prefer": "wait=2"})
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    client.delete(f"/jobs/{job['id']}", headers=ALICE)
