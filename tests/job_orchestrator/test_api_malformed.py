"""In-process API tests: requests that are malformed in ways the parsers let through.

Each is refused with problem+json (or read as absent, as a header's rule says), never a 500.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator

import httpx

from job_orchestrator.listing import encode_cursor
from tests.job_orchestrator.inprocess import InProcess
from tests.procs import wait_until


def _raw_post(port: int, path: str, body: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A POST sent as written, header values included. Returns the status and the body."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += ["Content-Type: application/json", f"Content-Length: {len(body.encode())}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), 10) as conn:
        conn.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body.encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), content


def _post_json(inproc: InProcess, path: str, text: str, **headers: str) -> httpx.Response:
    headers["content-type"] = "application/json"
    return inproc.client.post(path, content=text, headers=headers)


def test_non_finite_numbers_are_422_naming_the_field_before_anything_is_written(
    inproc: InProcess,
) -> None:
    """Python's JSON parser reads NaN, Infinity and 1e400; no JSON answer can carry them."""
    owner = f"non-finite-{uuid.uuid4().hex[:6]}"
    key = f"non-finite-{uuid.uuid4().hex}"
    fields = {
        '"type": "plain", "input": {"x": NaN}': "input.x",
        '"type": "plain", "input": {"x": -Infinity}': "input.x",
        '"type": "plain", "input": {"x": 1e400}': "input.x",
        '"type": "plain", "input": {"a": [1, {"b": Infinity}]}': "input.a.1.b",
        '"type": "wait", "input": {"seconds": NaN}': "input.seconds",
        '"type": "wait", "input": {"seconds": 0, "extra": NaN}': "input.extra",
        '"type": "plain", "timeoutSeconds": Infinity': "timeoutSeconds",
    }
    for path in ("/jobs", "/Jobs/StartJobWithTimeout"):
        for body, field in fields.items():
            text = f'{{"owner": "{owner}", {body}}}'
            bad = _post_json(inproc, path, text, **{"Idempotency-Key": key, "Prefer": "wait=5"})
            assert bad.status_code == 422, (path, body, bad.text)
            assert bad.headers["content-type"] == "application/problem+json"
            assert bad.json()["errors"][0]["field"] == field, bad.text
            assert "finite number" in bad.json()["detail"]

    # Nothing was written: the key was never claimed, and only this job is listed.
    good = inproc.client.post(
        "/jobs",
        json={"type": "plain", "owner": owner},
        headers={"Idempotency-Key": key, "Prefer": "wait=10"},
    )
    assert good.status_code == 200, good.text
    assert "idempotent-replayed" not in good.headers

    def listed() -> list[str]:
        page = inproc.client.get("/jobs", params={"owner": owner}).json()
        return [job["id"] for job in page["items"]]

    wait_until(lambda: listed() == [good.json()["id"]], timeout=10)


def test_input_dapr_cannot_carry_is_422_naming_the_field_before_anything_is_written(
    inproc: InProcess,
) -> None:
    """An integer past float64's range saved the job but daprd's outbox could not publish its
    event, so it stayed New forever; input nested past what the sidecar writes was a 503 with
    Retry-After, and its Idempotency-Key answered 409 for a while."""
    owner = f"undaprable-{uuid.uuid4().hex[:6]}"
    key = f"undaprable-{uuid.uuid4().hex}"
    deep = "[" * 300 + "]" * 300
    fields = {
        f'"type": "plain", "input": {{"n": {"9" * 400}}}': ("input.n", "float64"),
        f'"type": "plain", "input": {{"a": [1, -{"9" * 309}]}}': ("input.a.1", "float64"),
        f'"type": "plain", "input": {{"tree": {deep}}}': ("input.tree" + ".0" * 127, "nest"),
    }
    for path in ("/jobs", "/Jobs/StartJobWithTimeout"):
        for body, (field, said) in fields.items():
            text = f'{{"owner": "{owner}", {body}}}'
            bad = _post_json(inproc, path, text, **{"Idempotency-Key": key, "Prefer": "wait=5"})
            assert bad.status_code == 422, (path, body[:80], bad.text)
            assert bad.headers["content-type"] == "application/problem+json"
            assert bad.json()["errors"][0]["field"] == field, bad.text
            assert said in bad.json()["detail"], bad.text

    good = inproc.client.post(
        "/jobs",
        json={"type": "plain", "owner": owner, "input": {"n": 10**308}},
        headers={"Idempotency-Key": key, "Prefer": "wait=10"},
    )
    assert good.status_code == 200, good.text  # the key was never claimed
    assert good.json()["status"] == "Completed", good.text


def test_a_decodable_cursor_of_the_wrong_shape_is_422(inproc: InProcess) -> None:
    shapes = [
        {"after": "abc"},
        {"after": 5},
        {"after": [1e20, "x"]},
        {"after": [float("nan"), "x"]},
        {"after": ["x", "y"]},
        {"after": [1.5]},
        {"token": "t"},
    ]
    for shape in shapes:
        resp = inproc.client.get("/jobs", params={"cursor": encode_cursor(shape)})
        assert resp.status_code == 422, (shape, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["detail"].startswith("cursor:")


def test_a_chunked_body_over_the_limit_is_413(inproc: InProcess) -> None:
    def chunks(pad: int) -> Iterator[bytes]:
        yield b'{"type": "plain", "input": {"pad": "'
        yield b"x" * pad
        yield b'"}}'

    json_type = {"content-type": "application/json"}
    # A generator has no length: httpx sends it chunked, without Content-Length.
    fits = inproc.client.post("/jobs", content=chunks(100), headers=json_type)
    assert fits.request.headers["transfer-encoding"] == "chunked"
    assert fits.status_code == 202, fits.text

    limit = inproc.settings.max_body_bytes
    big = inproc.client.post("/jobs", content=chunks(limit), headers=json_type)
    assert big.request.headers["transfer-encoding"] == "chunked"
    assert big.status_code == 413, big.text
    assert big.headers["content-type"] == "application/problem+json"
    assert big.json()["title"] == "Request body too large"


def test_a_last_event_id_of_too_many_digits_is_no_id(inproc: InProcess) -> None:
    """More digits than int() reads (4300): no id at all, so the stream starts with the job."""
    job = inproc.client.post(
        "/jobs", json={"input": {"seconds": 0}}, headers={"Prefer": "wait=10"}
    ).json()
    assert job["status"] == "Completed"
    headers = {"Last-Event-ID": "9" * 5000}
    with inproc.client.stream("GET", f"/jobs/{job['id']}/events", headers=headers) as resp:
        assert resp.status_code == 200
        ids = [int(line[4:]) for line in resp.iter_lines() if line.startswith("id: ")]
    assert ids == [job["sequence"]]


def test_a_body_not_sent_as_json_is_415_and_broken_json_is_located(inproc: InProcess) -> None:
    body = b'{"input": {"seconds": 0}}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        for path in ("/jobs", "/Jobs/StartJobWithTimeout"):
            resp = inproc.client.post(path, content=body, headers=headers)
            assert resp.status_code == 415, (content_type, resp.text)
            assert resp.headers["content-type"] == "application/problem+json"
            assert resp.headers["accept-post"] == "application/json"
            assert "application/json" in resp.json()["detail"]
    suffixed = inproc.client.post(
        "/jobs", content=body, headers={"content-type": "application/vnd.jobs+json"}
    )
    assert suffixed.status_code == 202, suffixed.text
    inproc.client.delete(f"/jobs/{suffixed.json()['id']}")
    for broken in (b"not json", b'{"input": {}} trailing'):
        resp = inproc.client.post(
            "/jobs", content=broken, headers={"content-type": "application/json"}
        )
        assert resp.status_code == 422
        error = resp.json()["errors"][0]
        assert error["field"] == "body", error
        assert error["message"].startswith("the body is not valid JSON ("), error
    # A JSON body of the wrong shape is still a 422 about the body, not a 415.
    wrong = inproc.client.post("/jobs", json=[1, 2])
    assert wrong.status_code == 422, wrong.text


def test_an_idempotency_key_is_read_without_the_spaces_around_it_and_only_once(
    inproc: InProcess,
) -> None:
    """``"k "`` and ``"k"`` made two jobs (an HTTP field value has no surrounding spaces), and
    of two Idempotency-Key headers the first counted, silently."""
    key = f"spaced-{uuid.uuid4().hex}"
    body = {"type": "plain", "owner": "spaces"}
    first = inproc.client.post("/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    port = inproc.client.base_url.port
    assert port is not None
    for spaced in (f"{key} ", f"{key}\t ", f" {key}"):  # HTTP clients refuse to send these
        status, answer = _raw_post(port, "/jobs", json.dumps(body), {"Idempotency-Key": spaced})
        assert status in (200, 202), answer
        assert json.loads(answer)["id"] == first.json()["id"], repr(spaced)

    for path in ("/jobs", "/Jobs/StartJobWithTimeout"):
        two = inproc.client.post(
            path,
            json=body,
            headers=[("Idempotency-Key", key), ("Idempotency-Key", "other")],
        )
        assert two.status_code == 422, two.text
        assert two.headers["content-type"] == "application/problem+json"
        assert two.json()["errors"][0]["field"] == "header.Idempotency-Key", two.text
        assert "one Idempotency-Key" in two.json()["detail"]
