"""The submissions served below FastAPI: which it takes, and that it hands the rest on intact.

Every other API test submits through the in-process server, so both ways (this path for
well-formed requests, the routes for the others) answer them; here the inner app is a recorder,
to see which way each request went.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from job_orchestrator.app import create_app
from job_orchestrator.fast_submit import FastSubmit, Unusual, idempotency_key, job_request
from job_orchestrator.settings import Role
from tests.job_orchestrator.inprocess import InProcess

JOB = {"type": "wait", "input": {"seconds": 0}}


class Recorder:
    """The app below: records what reached it and answers 599."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.bodies.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@dataclasses.dataclass
class Answer:
    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
async def app(inproc: InProcess) -> AsyncIterator[FastAPI]:
    """A second orchestrator (API only) on the in-process replica's sidecar, lifespan running."""
    name = f"fast-{uuid.uuid4().hex[:6]}"
    settings = dataclasses.replace(inproc.settings, replica_name=name, role=Role.API)
    served = create_app(settings)
    async with served.router.lifespan_context(served):
        yield served


async def call(
    app: FastAPI,
    recorder: Recorder,
    body: bytes,
    *,
    path: str = "/jobs",
    method: str = "POST",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Answer:
    chunks = [body[:5], body[5:]]  # in two parts, as a client may send it
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            part = chunks.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": headers if headers is not None else [(b"content-type", b"application/json")],
        "app": app,
    }
    await FastSubmit(recorder)(scope, receive, send)
    start = sent[0]
    body_out = b"".join(m.get("body", b"") for m in sent[1:])
    return Answer(start["status"], Headers(raw=start["headers"]), body_out)


async def test_a_well_formed_submission_is_answered_here(app: FastAPI) -> None:
    recorder = Recorder()
    answer = await call(app, recorder, json.dumps(JOB).encode())
    assert recorder.bodies == []
    assert answer.status == 202
    job = answer.json()
    assert job["status"] in ("New", "InProgress", "Completed")
    assert answer.headers["location"] == f"/jobs/{job['id']}"
    assert answer.headers["vary"] == "Prefer"


async def test_start_job_with_timeout_waits_here(app: FastAPI) -> None:
    recorder = Recorder()
    body = json.dumps({**JOB, "timeoutSeconds": 0}).encode()
    answer = await call(app, recorder, body, path="/Jobs/StartJobWithTimeout")
    assert recorder.bodies == []
    assert answer.status == 202
    assert "vary" not in answer.headers  # only POST /jobs honours Prefer


async def test_an_idempotency_key_replays_the_same_job(app: FastAPI) -> None:
    recorder = Recorder()
    key = [(b"idempotency-key", f" k-{uuid.uuid4().hex} ".encode())]
    headers = [(b"content-type", b"application/json"), *key]
    first = await call(app, recorder, json.dumps(JOB).encode(), headers=headers)
    again = await call(app, recorder, json.dumps(JOB).encode(), headers=headers)
    assert recorder.bodies == []
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"


async def test_an_unknown_job_type_is_the_routes_problem(app: FastAPI) -> None:
    recorder = Recorder()
    answer = await call(app, recorder, json.dumps({"type": "no-such-type"}).encode())
    assert recorder.bodies == []
    assert answer.status == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["field"] == "type"
    assert "wait" in problem["knownTypes"]
    assert problem["instance"] == "/jobs"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"type": "wait", "input": ', None),  # not JSON
        (b'{"type": "wait", "seconds": 3}', None),  # a field the model forbids
        (b'{"type": "wait", "timeoutSeconds": "2"}', None),  # strict: no number in a string
        (b"[]", None),
        (b"", None),
        (json.dumps(JOB).encode(), [(b"content-type", b"text/plain")]),
        (json.dumps(JOB).encode(), []),
        (
            json.dumps(JOB).encode(),
            [
                (b"content-type", b"application/json"),
                (b"idempotency-key", b"a"),
                (b"idempotency-key", b"b"),
            ],
        ),
        (
            json.dumps(JOB).encode(),
            [(b"content-type", b"application/json"), (b"idempotency-key", b"  ")],
        ),
        (
            json.dumps(JOB).encode(),
            [(b"content-type", b"application/json"), (b"idempotency-key", b"k" * 300)],
        ),
    ],
)
async def test_anything_else_goes_to_the_routes_with_its_body(
    app: FastAPI, body: bytes, headers: list[tuple[bytes, bytes]] | None
) -> None:
    recorder = Recorder()
    answer = await call(app, recorder, body, headers=headers)
    assert answer.status == 599
    assert recorder.bodies == [body]


@pytest.mark.parametrize(("method", "path"), [("GET", "/jobs"), ("POST", "/jobs/x/cancel")])
async def test_other_routes_are_not_touched(app: FastAPI, method: str, path: str) -> None:
    recorder = Recorder()
    answer = await call(app, recorder, b"{}", method=method, path=path)
    assert answer.status == 599
    assert recorder.bodies == [b"{}"]


def test_idempotency_key_reads_as_the_route_does() -> None:
    def key(*values: str) -> str | None:
        return idempotency_key(Headers(raw=[(b"idempotency-key", v.encode()) for v in values]))

    assert key() is None
    assert key(" abc\t") == "abc"
    for refused in (("a", "b"), ("",), (" ",), ("k" * 256,)):
        with pytest.raises(Unusual):
            key(*refused)


def test_job_request_validates_as_the_route_does() -> None:
    assert job_request(b'{"type": "wait", "input": {"seconds": 1}}').input == {"seconds": 1}
    for refused in (b"", b"\xff", b"null", b'{"type": ""}', b'{"maxAttempts": 1.5}'):
        with pytest.raises(Unusual):
            job_request(refused)
