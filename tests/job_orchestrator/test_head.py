"""HEAD is answered wherever GET is (RFC 9110 section 9.1), through the real uvicorn server."""

from __future__ import annotations

import time

from tests.job_orchestrator.inprocess import InProcess


def _finished_job(inproc: InProcess) -> str:
    done = inproc.client.post("/jobs", json={"input": {"seconds": 0}}, headers={"Prefer": "wait=5"})
    assert done.status_code == 200 and done.json()["status"] == "Completed"
    job_id: str = done.json()["id"]
    return job_id


def test_head_has_the_gets_status_and_headers_without_a_body(inproc: InProcess) -> None:
    job_id = _finished_job(inproc)
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/result", "/healthz", "/jobs?limit=5"):
        got = inproc.client.get(path)
        head = inproc.client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert int(head.headers["content-length"]) == len(got.content), path


def test_head_of_a_missing_job_is_the_gets_problem_without_a_body(inproc: InProcess) -> None:
    head = inproc.client.head("/jobs/nope")
    assert head.status_code == 404
    assert head.headers["content-type"] == "application/problem+json"
    assert head.content == b""


def test_head_long_poll_waits_like_the_get(inproc: InProcess) -> None:
    job = inproc.client.post("/jobs", json={"input": {"seconds": 5}}).json()
    started = time.monotonic()
    head = inproc.client.head(f"/jobs/{job['id']}", params={"wait": 0.5})
    assert time.monotonic() - started >= 0.45  # served by the long poll, which waited
    assert head.status_code == 200 and head.content == b""
    assert "retry-after" in head.headers  # not final yet
    inproc.client.post(f"/jobs/{job['id']}/cancel")


def test_head_of_an_event_stream_ends_after_its_headers(inproc: InProcess) -> None:
    job = inproc.client.post("/jobs", json={"input": {"seconds": 30}}).json()
    started = time.monotonic()
    head = inproc.client.head(f"/jobs/{job['id']}/events", timeout=10)
    # The GET would stream until the job ends, 30 s from now.
    assert time.monotonic() - started < 10
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    assert head.content == b""
    inproc.client.post(f"/jobs/{job['id']}/cancel")


def test_allow_names_head_beside_get(inproc: InProcess) -> None:
    job_id = _finished_job(inproc)
    wrong = inproc.client.put(f"/jobs/{job_id}")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "DELETE, GET, HEAD"
    # HEAD is refused where GET is: cancel is POST only.
    cancel = inproc.client.head(f"/jobs/{job_id}/cancel")
    assert cancel.status_code == 405
    assert cancel.headers["allow"] == "POST"
