"""In-process API tests: the real app, a real sidecar and Redis; submit, wait, read, results."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from job_orchestrator.idempotency import fingerprint, record_key
from tests.job_orchestrator.inprocess import InProcess
from tests.job_orchestrator.stack import sidecar_state
from tests.procs import wait_until


def test_start_job_with_timeout_answers_200_when_done_in_time(inproc: InProcess) -> None:
    resp = inproc.client.post(
        "/Jobs/StartJobWithTimeout",
        json={"input": {"seconds": 0.2}, "owner": "tester", "timeoutSeconds": 5},
    )
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "Completed"
    assert job["result"] == {"waitedSeconds": 0.2}
    assert job["owner"] == "tester" and job["type"] == "wait"
    assert job["worker"] == inproc.settings.replica_name
    assert job["durationSeconds"] >= 0.2
    assert resp.headers["content-location"] == f"/jobs/{job['id']}"


def test_start_job_with_timeout_answers_202_then_location_long_polls(inproc: InProcess) -> None:
    started = time.monotonic()
    resp = inproc.client.post(
        "/Jobs/StartJobWithTimeout", json={"input": {"seconds": 2.5}, "timeoutSeconds": 0.3}
    )
    assert resp.status_code == 202, resp.text
    assert 0.3 <= time.monotonic() - started < 2.0
    job = resp.json()
    assert job["status"] in ("New", "InProgress")
    assert resp.headers["location"] == f"/jobs/{job['id']}"
    assert resp.headers["retry-after"] == "1"

    polled = inproc.client.get(resp.headers["location"])
    assert polled.status_code == 200 and polled.headers["retry-after"] == "1"

    done = inproc.client.get(resp.headers["location"], params={"wait": 10})
    assert done.status_code == 200
    final = done.json()
    assert final["status"] == "Completed" and "retry-after" not in done.headers
    # created, claimed, at least one throttled progress update, completed
    assert final["sequence"] >= 4
    assert final["progress"]["percent"] == 100.0


def test_post_jobs_is_async_unless_prefer_wait(inproc: InProcess) -> None:
    body = {"input": {"seconds": 0.3}}
    resp = inproc.client.post("/jobs", json=body)
    assert resp.status_code == 202
    assert resp.headers["location"] == f"/jobs/{resp.json()['id']}"
    assert resp.headers["vary"] == "Prefer"
    assert "preference-applied" not in resp.headers

    waited = inproc.client.post("/jobs", json=body, headers={"Prefer": "wait=5"})
    assert waited.status_code == 200
    assert waited.json()["status"] == "Completed"
    assert waited.headers["preference-applied"] == "wait=5"

    capped = inproc.client.post("/jobs", json=body, headers={"Prefer": "wait=3600"})
    assert capped.headers["preference-applied"] == "wait=10"  # the configured cap

    async_ = inproc.client.post("/jobs", json=body, headers={"Prefer": "respond-async"})
    assert async_.status_code == 202
    assert async_.headers["preference-applied"] == "respond-async"


def test_respond_async_is_applied_only_by_a_202(inproc: InProcess) -> None:
    """RFC 7240: Preference-Applied names only what was honoured; a 200 did not respond async."""
    prefer = {"Prefer": "respond-async, wait=5"}
    done = inproc.client.post("/jobs", json={"input": {"seconds": 0}}, headers=prefer)
    assert done.status_code == 200 and done.json()["status"] == "Completed"
    assert done.headers["preference-applied"] == "wait=5"

    prefer = {"Prefer": "respond-async, wait=0.2"}
    running = inproc.client.post("/jobs", json={"input": {"seconds": 3}}, headers=prefer)
    assert running.status_code == 202
    assert running.headers["preference-applied"] == "respond-async, wait=0.2"
    inproc.client.delete(f"/jobs/{running.json()['id']}")


def test_idempotency_key_gives_back_the_same_job(inproc: InProcess) -> None:
    key = {"Idempotency-Key": f"order-{time.time_ns()}"}
    body = {"input": {"seconds": 0.1}, "owner": "idem"}
    first = inproc.client.post("/jobs", json=body, headers=key)
    second = inproc.client.post("/jobs", json=body, headers={**key, "Prefer": "wait=5"})
    assert first.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert second.status_code == 200  # the replay waited for the same job
    other = inproc.client.post("/jobs", json={**body, "owner": "someone-else"}, headers=key)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in other.json()["detail"]


def test_idempotency_compares_the_job_not_the_bytes_of_the_request(inproc: InProcess) -> None:
    """A retry serialised differently (`1` for `1.0`, a default spelled out) is the same job;
    an empty key is no key anyone could share, so it is refused, naming the header."""
    key = {"Idempotency-Key": f"same-job-{time.time_ns()}"}
    first = inproc.client.post("/jobs", json={"input": {"seconds": 1}}, headers=key)
    assert first.status_code == 202, first.text
    for same in (
        {"input": {"seconds": 1.0}},
        {"type": "wait", "input": {"seconds": 1, "fail": False}, "maxAttempts": 1},
    ):
        again = inproc.client.post("/jobs", json=same, headers=key)
        assert again.status_code == 202, (same, again.text)
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
    other = inproc.client.post("/jobs", json={"input": {"seconds": 2}}, headers=key)
    assert other.status_code == 422
    empty = inproc.client.post(
        "/jobs", json={"input": {"seconds": 0}}, headers={"Idempotency-Key": ""}
    )
    assert empty.status_code == 422, empty.text
    assert empty.json()["errors"][0]["field"] == "header.Idempotency-Key"
    inproc.client.delete(f"/jobs/{first.json()['id']}")


def test_the_key_of_a_deleted_job_never_starts_it_again(inproc: InProcess) -> None:
    key = {"Idempotency-Key": f"deleted-{time.time_ns()}"}
    body = {"input": {"seconds": 0}}
    done = inproc.client.post("/jobs", json=body, headers={**key, "Prefer": "wait=5"})
    assert done.status_code == 200, done.text
    job_id = done.json()["id"]
    assert inproc.client.delete(f"/jobs/{job_id}").status_code == 204
    # Long past the claim's orphan time, where a missing job reads as a creator that died.
    record = record_key(key["Idempotency-Key"])
    state_url = f"http://127.0.0.1:{inproc.replica.http_port}/v1.0/state/statestore"
    read = httpx.get(f"{state_url}/{record}")
    claimed = read.json()
    claimed["claimedAt"] -= 3600
    # Claimed first-write: overwritten only with its etag.
    item = {"key": record, "value": claimed, "etag": read.headers["etag"]}
    saved = httpx.post(state_url, json=[item])
    assert saved.status_code == 204, saved.text
    for _ in range(2):
        again = inproc.client.post("/jobs", json=body, headers=key)
        assert again.status_code == 409, again.text
        assert again.headers["content-type"] == "application/problem+json"
        assert job_id in again.json()["detail"] and "deleted" in again.json()["detail"]
    assert inproc.client.get(f"/jobs/{job_id}").status_code == 404


def test_keys_claimed_before_fingerprints_had_a_version_still_find_their_jobs(
    inproc: InProcess,
) -> None:
    """A retry across an upgrade: keys claimed by the first releases (the request's fields as
    sent) and by later unversioned ones (the job as made) give back their job, not a 422."""
    state_url = f"http://127.0.0.1:{inproc.replica.http_port}/v1.0/state/statestore"
    body = {"input": {"seconds": 1}, "owner": "upgrade"}
    job = inproc.client.post("/jobs", json=body).json()
    as_sent = {**body, "type": "wait", "max_attempts": None, "run_timeout_seconds": None}
    as_made = {**as_sent, "input": {"seconds": 1.0, "fail": False}, "max_attempts": 1}
    for name, fields in (("as-sent", as_sent), ("as-made", as_made)):
        key = f"before-versions-{name}-{time.time_ns()}"
        record = {"jobId": job["id"], "fingerprint": fingerprint(fields), "claimedAt": 0}
        saved = httpx.post(state_url, json=[claimed(key, record)])
        assert saved.status_code == 204, saved.text
        again = inproc.client.post("/jobs", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 202, (name, again.text)
        assert again.json()["id"] == job["id"]
        assert again.headers["idempotent-replayed"] == "true"
        other = {**body, "input": {"seconds": 2}}
        refused = inproc.client.post("/jobs", json=other, headers={"Idempotency-Key": key})
        assert refused.status_code == 422, (name, refused.text)
    # A versioned record is compared in its own format only.
    key = f"versioned-{time.time_ns()}"
    record = {
        "jobId": job["id"],
        "fingerprint": fingerprint(as_sent),
        "fingerprintVersion": 2,
        "claimedAt": 0,
    }
    httpx.post(state_url, json=[claimed(key, record)])
    refused = inproc.client.post("/jobs", json=body, headers={"Idempotency-Key": key})
    assert refused.status_code == 422, refused.text
    inproc.client.delete(f"/jobs/{job['id']}")


def claimed(key: str, record: dict[str, Any]) -> dict[str, Any]:
    """A key's record as the orchestrator claims it: first-write (state.redis lets a write
    without an etag replace a record saved any other way)."""
    return {"key": record_key(key), "value": record, "options": {"concurrency": "first-write"}}


def test_concurrent_requests_with_one_key_make_one_job(inproc: InProcess) -> None:
    key = {"Idempotency-Key": f"race-{time.time_ns()}"}
    body = {"input": {"seconds": 0.2}}
    with ThreadPoolExecutor(5) as pool:
        answers = list(
            pool.map(lambda _: inproc.client.post("/jobs", json=body, headers=key), range(5))
        )
    accepted = [r for r in answers if r.status_code in (200, 202)]
    busy = [r for r in answers if r.status_code == 409]
    assert len(accepted) + len(busy) == 5
    assert len({r.json()["id"] for r in accepted}) == 1
    assert all(r.headers["retry-after"] for r in busy)


def test_unknown_job_is_404_problem(inproc: InProcess) -> None:
    for path in ("/jobs/nope", "/jobs/nope/result", "/jobs/nope/events"):
        resp = inproc.client.get(path)
        assert resp.status_code == 404, path
        assert resp.headers["content-type"] == "application/problem+json"
        assert "nope" in resp.json()["detail"]
    assert inproc.client.post("/jobs/nope/cancel").status_code == 404
    assert inproc.client.delete("/jobs/nope").status_code == 404


def test_result_endpoints(inproc: InProcess) -> None:
    running = inproc.client.post("/jobs", json={"input": {"seconds": 2}}).json()
    early = inproc.client.get(f"/jobs/{running['id']}/result")
    assert early.status_code == 409 and "no result" in early.json()["detail"]

    done = inproc.client.post("/jobs", json={"input": {"seconds": 0}}, headers={"Prefer": "wait=5"})
    job_id = done.json()["id"]
    result = inproc.client.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200 and result.json() == {"waitedSeconds": 0.0}
    assert inproc.client.delete(f"/jobs/{job_id}/result").status_code == 204
    assert inproc.client.delete(f"/jobs/{job_id}/result").status_code == 204
    assert inproc.client.get(f"/jobs/{job_id}/result").status_code == 410
    kept = inproc.client.get(f"/jobs/{job_id}")
    assert kept.status_code == 200
    assert kept.json()["status"] == "Completed" and kept.json()["result"] is None


def test_failed_jobs_carry_a_clear_error(inproc: InProcess) -> None:
    failed = inproc.client.post(
        "/Jobs/StartJobWithTimeout", json={"input": {"seconds": 0, "fail": True}}
    ).json()
    assert failed["status"] == "Failed"
    assert "fail=true" in failed["error"]
    assert inproc.client.get(f"/jobs/{failed['id']}/result").status_code == 409


def test_retries_with_backoff_until_max_attempts(inproc: InProcess) -> None:
    ok = inproc.client.post(
        "/Jobs/StartJobWithTimeout",
        json={"type": "flaky", "input": {"succeedOn": 2}, "maxAttempts": 3},
    ).json()
    assert (ok["status"], ok["attempt"], ok["result"]) == ("Completed", 2, {"attempts": 2})

    gave_up = inproc.client.post(
        "/Jobs/StartJobWithTimeout", json={"type": "flaky", "maxAttempts": 2}
    ).json()
    assert (gave_up["status"], gave_up["attempt"]) == ("Failed", 2)
    assert gave_up["error"] == "RuntimeError: boom 2"


def test_run_timeout_fails_the_job(inproc: InProcess) -> None:
    job = inproc.client.post(
        "/Jobs/StartJobWithTimeout",
        json={"input": {"seconds": 30}, "runTimeoutSeconds": 0.5, "timeoutSeconds": 5},
    ).json()
    assert job["status"] == "Failed"
    assert "timed out after 0.5 s" in job["error"]


def test_plain_function_handler_runs_in_a_thread(inproc: InProcess) -> None:
    job = inproc.client.post("/Jobs/StartJobWithTimeout", json={"type": "plain"}).json()
    assert job["status"] == "Completed"
    assert job["result"]["thread"] != "MainThread"


def test_a_long_quiet_job_keeps_its_lease(inproc: InProcess) -> None:
    """Runs past several leases (3 s) and queue redeliveries without being taken over."""
    job = inproc.client.post("/jobs", json={"type": "quiet", "input": {"seconds": 4}}).json()
    wait_until(lambda: _raw(inproc, job["id"])["status"] == "InProgress")
    claimed = _raw(inproc, job["id"])
    wait_until(
        lambda: _raw(inproc, job["id"])["leaseExpiresAt"] > claimed["leaseExpiresAt"], timeout=5
    )
    renewed = _raw(inproc, job["id"])
    assert renewed["sequence"] == claimed["sequence"]  # a renewal publishes nothing
    final = inproc.client.get(f"/jobs/{job['id']}", params={"wait": 10}).json()
    assert (final["status"], final["attempt"]) == ("Completed", 1)


def _raw(inproc: InProcess, job_id: str) -> dict[str, Any]:
    record: dict[str, Any] = sidecar_state(inproc.replica.http_port, f"job-{job_id}")
    return record


def test_long_poll_answers_like_the_route(inproc: InProcess) -> None:
    job = inproc.client.post("/jobs", json={"input": {"seconds": 2}}).json()
    early = inproc.client.get(f"/jobs/{job['id']}", params={"wait": 0.2})
    assert early.status_code == 200 and early.headers["retry-after"] == "1"
    assert early.json()["status"] in ("New", "InProgress")
    missing = inproc.client.get("/jobs/nope", params={"wait": 0.2})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert inproc.client.get("/jobs/nope", params={"wait": "soon"}).status_code == 422


def test_a_failed_job_keeps_the_progress_its_handler_reported_last(inproc: InProcess) -> None:
    """Progress writes are throttled: one reported right before the failure was dropped, and
    the failed job showed 0 %."""
    resp = inproc.client.post(
        "/jobs", json={"type": "halfway", "maxAttempts": 1}, headers={"Prefer": "wait=10"}
    )
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "Failed", job
    assert job["progress"] == {"percent": 40, "message": "downloading"}, job
    assert job["error"] == "the download broke off", job


def test_a_misspelt_field_of_the_wait_input_is_422(inproc: InProcess) -> None:
    resp = inproc.client.post("/jobs", json={"type": "wait", "input": {"secs": 5}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == "input.secs", resp.text
