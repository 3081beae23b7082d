"""In-process API tests: cancel, delete, listing, events, validation, health, docs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import redis

from dapr_support.tracecontext import trace_id, valid_traceparent
from job_orchestrator.index_keys import directory_key, minute_of, part_key
from job_orchestrator.jobs import iso
from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import InProcess
from tests.job_orchestrator.stack import sidecar_state
from tests.procs import wait_until


def seed_new_job(inproc: InProcess) -> str:
    """A New job with no queue message: stays New until someone acts on it."""
    job_id = str(uuid.uuid4())
    _save(inproc, [{"key": f"job-{job_id}", "value": _seed_record(job_id, time.time(), None)}])
    return job_id


def test_cancel_new_job_is_immediate(inproc: InProcess) -> None:
    job_id = seed_new_job(inproc)
    resp = inproc.client.post(f"/jobs/{job_id}/cancel")
    assert resp.status_code == 200
    assert resp.json()["status"] == "Canceled"
    again = inproc.client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


def test_cancel_running_job_reaches_its_handler(inproc: InProcess) -> None:
    job = inproc.client.post("/jobs", json={"type": "stubborn"}).json()
    inproc.client.get(f"/jobs/{job['id']}", params={"wait": 0})
    wait_until(lambda: inproc.client.get(f"/jobs/{job['id']}").json()["status"] == "InProgress")
    resp = inproc.client.post(f"/jobs/{job['id']}/cancel")
    assert resp.status_code == 200, resp.text
    canceled = resp.json()
    assert canceled["status"] == "Canceled" and canceled["cancelRequested"] is True
    assert inproc.client.post(f"/jobs/{job['id']}/cancel").status_code == 409


def test_delete_cancels_and_removes(inproc: InProcess) -> None:
    job = inproc.client.post("/jobs", json={"input": {"seconds": 30}}).json()
    assert inproc.client.delete(f"/jobs/{job['id']}").status_code == 204
    assert inproc.client.get(f"/jobs/{job['id']}").status_code == 404


def test_listing_filters_and_pages(inproc: InProcess) -> None:
    owner = f"lister-{uuid.uuid4().hex[:6]}"
    ids = [
        inproc.client.post(
            "/jobs", json={"input": {"seconds": 0}, "owner": owner}, headers={"Prefer": "wait=5"}
        ).json()["id"]
        for _ in range(3)
    ]

    def listed() -> list[dict[str, Any]]:
        resp = inproc.client.get("/jobs", params={"owner": owner, "limit": 100})
        assert resp.status_code == 200
        items: list[dict[str, Any]] = resp.json()["items"]
        return items

    wait_until(lambda: len(listed()) == 3, timeout=10)
    assert [j["id"] for j in listed()] == list(reversed(ids))  # newest first

    first = inproc.client.get("/jobs", params={"owner": owner, "limit": 2}).json()
    assert len(first["items"]) == 2 and first["nextCursor"]
    second = inproc.client.get(
        "/jobs", params={"owner": owner, "limit": 2, "cursor": first["nextCursor"]}
    ).json()
    assert [j["id"] for j in first["items"] + second["items"]] == list(reversed(ids))
    assert second["nextCursor"] is None

    none_failed = inproc.client.get("/jobs", params={"owner": owner, "status": "Failed"}).json()
    assert none_failed["items"] == []
    assert inproc.client.get("/jobs", params={"status": "Done"}).status_code == 422
    assert inproc.client.get("/jobs", params={"cursor": "garbage!"}).status_code == 422


def test_the_index_mark_passes_each_job_once_its_entry_is_saved(inproc: InProcess) -> None:
    """What other replicas read to know a job they claimed is indexed (index.py)."""
    job = inproc.client.post("/jobs", json={"input": {"seconds": 0}}).json()
    record = sidecar_state(inproc.replica.http_port, f"job-{job['id']}")
    instance, _, number = record["indexedAs"].rpartition(":")
    mark_key = f"jobindex-mark-{instance}"

    def mark() -> int:
        saved = sidecar_state(inproc.replica.http_port, mark_key)
        return int(saved["number"]) if saved else 0

    wait_until(lambda: mark() >= int(number), timeout=10)
    listed = inproc.client.get("/jobs", params={"limit": 100}).json()["items"]
    assert job["id"] in [j["id"] for j in listed]
    assert "indexedAs" not in job  # internal: stored, never shown


def test_events_stream_until_final(inproc: InProcess) -> None:
    job = inproc.client.post("/jobs", json={"input": {"seconds": 1.5}}).json()
    events: list[tuple[str, dict[str, Any]]] = []
    with inproc.client.stream("GET", f"/jobs/{job['id']}/events") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    sequences = [e[1]["sequence"] for e in events]
    assert sequences == sorted(set(sequences))
    assert events[-1][0] == "job.completed" and events[-1][1]["status"] == "Completed"
    assert any(e[0] == "job.updated" for e in events)


def _stream(inproc: InProcess, job_id: str, headers: dict[str, str]) -> list[int]:
    """The ids (sequences) of a Server-Sent Events stream, read until the server ends it."""
    with inproc.client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as resp:
        assert resp.status_code == 200
        return [int(line[4:]) for line in resp.iter_lines() if line.startswith("id: ")]


def test_a_reconnecting_event_stream_gets_only_what_it_has_not_seen(inproc: InProcess) -> None:
    job = inproc.client.post("/jobs", json={"input": {"seconds": 1.2}}).json()
    wait_until(lambda: inproc.client.get(f"/jobs/{job['id']}").json()["status"] == "InProgress")
    now = inproc.client.get(f"/jobs/{job['id']}").json()["sequence"]
    # EventSource sends back the last id it saw: the version it holds is not sent again.
    ids = _stream(inproc, job["id"], {"Last-Event-ID": str(now)})
    assert ids and ids[0] > now
    assert ids == sorted(set(ids))
    final = inproc.client.get(f"/jobs/{job['id']}").json()
    assert final["status"] == "Completed" and ids[-1] == final["sequence"]
    # Holding the final version: 204, so a browser's EventSource stops reconnecting.
    last = {"Last-Event-ID": str(final["sequence"])}
    assert inproc.client.get(f"/jobs/{job['id']}/events", headers=last).status_code == 204
    # An older or unreadable id is no id: the stream starts with the job as it is.
    for given in (str(final["sequence"] - 1), "abc", "-1"):
        assert _stream(inproc, job["id"], {"Last-Event-ID": given}) == [final["sequence"]]


def _events_of(inproc: InProcess, redis_server: RedisServer, job_id: str) -> list[dict[str, Any]]:
    """The CloudEvents of one job on the topic, in order, as the broker holds them."""
    conn = redis.Redis(port=redis_server.port)
    try:
        entries = conn.xrange(inproc.topic)
    finally:
        conn.close()
    events = (json.loads(fields[b"data"]) for _, fields in entries)
    return [event for event in events if event.get("subject") == job_id]


def test_every_change_is_a_cloudevent_on_the_topic(
    inproc: InProcess, redis_server: RedisServer
) -> None:
    job = inproc.client.post(
        "/Jobs/StartJobWithTimeout", json={"input": {"seconds": 1.2}, "owner": "events"}
    ).json()
    assert job["status"] == "Completed"
    conn = redis.Redis(port=redis_server.port)
    try:
        ttl = conn.ttl(f"job-orchestrator||job-{job['id']}")
    finally:
        conn.close()
    retention = inproc.settings.retention_seconds
    assert retention - 60 < ttl <= retention  # final jobs expire through ttlInSeconds
    mine = _events_of(inproc, redis_server, job["id"])
    types = [e["type"] for e in mine]
    assert types[0] == "job.created" and types[-1] == "job.completed"
    assert "job.updated" in types
    assert all(e["data"]["owner"] == "events" for e in mine)
    assert [e["data"]["sequence"] for e in mine] == list(range(1, len(mine) + 1))  # no gaps
    assert all("leaseExpiresAt" not in e["data"] for e in mine)  # the public projection
    # The fields are set as daprd's outbox sets them, from plain op metadata.
    assert all("cloudevent.type" not in e for e in mine)


def test_a_jobs_events_continue_the_trace_of_the_request_that_created_it(
    inproc: InProcess, redis_server: RedisServer
) -> None:
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    body = {"input": {"seconds": 0}}
    traced = inproc.client.post(
        "/Jobs/StartJobWithTimeout", json=body, headers={"traceparent": caller}
    ).json()
    assert traced["status"] == "Completed"
    events = _events_of(inproc, redis_server, traced["id"])
    assert [e["type"] for e in events][-1] == "job.completed"
    assert {(e["traceparent"], e["traceid"]) for e in events} == {(caller, caller)}

    # No usable traceparent (none, or all-zero ids): each job starts a trace of its own, which
    # all its events share; the request is not refused.
    traces = []
    for headers in ({}, {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}):
        response = inproc.client.post("/jobs", json=body, headers={"Prefer": "wait=5", **headers})
        assert response.status_code == 200
        events = _events_of(inproc, redis_server, response.json()["id"])
        assert len(events) >= 3
        (trace,) = {e["traceparent"] for e in events}
        assert valid_traceparent(trace) == trace
        traces.append(trace_id(trace))
    assert len({trace_id(caller), *traces}) == 3


def test_validation_errors_name_the_field(inproc: InProcess) -> None:
    bad = inproc.client.post("/Jobs/StartJobWithTimeout", json={"timeoutSeconds": "soon"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["field"] == "timeoutSeconds"

    unknown = inproc.client.post("/jobs", json={"type": "teleport"})
    assert unknown.status_code == 422
    assert unknown.json()["knownTypes"] == [
        "flaky",
        "halfway",
        "plain",
        "quiet",
        "stubborn",
        "wait",
    ]

    # An owner is a name: "" would make a job that no owner filter can list.
    no_owner = inproc.client.post("/jobs", json={"owner": ""})
    assert no_owner.status_code == 422
    assert no_owner.json()["errors"][0]["field"] == "owner"

    # A misspelt field is refused, not dropped: the job would run without the asked-for limit.
    for path in ("/jobs", "/Jobs/StartJobWithTimeout"):
        typo = inproc.client.post(path, json={"input": {"seconds": 0}, "runTimeoutSecond": 5})
        assert typo.status_code == 422, typo.text
        assert typo.json()["errors"][0]["field"] == "runTimeoutSecond"
        assert "not permitted" in typo.json()["errors"][0]["message"]

    bad_input = inproc.client.post("/jobs", json={"input": {"seconds": -1}})
    assert bad_input.status_code == 422
    assert bad_input.json()["errors"][0]["field"] == "input.seconds"

    not_json = inproc.client.post(
        "/jobs", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422

    huge = inproc.client.post("/jobs", json={"input": {"blob": "x" * 5000}})
    assert huge.status_code == 413
    assert huge.headers["content-type"] == "application/problem+json"


def test_text_that_is_not_unicode_is_422_naming_where(inproc: InProcess) -> None:
    """JSON's grammar lets an unpaired surrogate escape through; it cannot be stored as UTF-8."""
    owner = f"surrogates-{uuid.uuid4().hex[:6]}-\U0001f600"  # a well-formed pair: one character

    def post(path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        # json.dumps writes a lone surrogate as its escape, as a JavaScript client would.
        content = json.dumps({"owner": owner, **body})
        assert "\\ud" in content
        headers["content-type"] = "application/json"
        return inproc.client.post(path, content=content, headers=headers)

    bodies = {
        "input.note[1]": {"input": {"seconds": 0, "note": ["ok", "a\ud800b"]}},
        "input.\\udc00": {"input": {"\udc00": 1}},
    }
    for path in ("/jobs", "/Jobs/StartJobWithTimeout"):
        for where, body in bodies.items():
            bad = post(path, body)
            assert bad.status_code == 422, bad.text
            assert bad.headers["content-type"] == "application/problem+json"
            assert bad.json()["errors"][0]["field"] == "input"
            assert f"the text at {where} holds an unpaired UTF-16 surrogate" in bad.json()["detail"]
    for field in ("owner", "type"):
        bad = post("/jobs", {field: "x\ud800"})
        assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, field)
    paired = post("/jobs", {"input": {"seconds": 0}}, Prefer="wait=10")
    assert paired.status_code == 200, paired.text
    assert paired.json()["owner"] == owner

    def listed() -> list[str]:
        page = inproc.client.get("/jobs", params={"owner": owner}).json()
        return [job["id"] for job in page["items"]]

    # The listing index is written in the background; only the well-formed job was accepted.
    wait_until(lambda: listed() == [paired.json()["id"]], timeout=10)


def test_health_docs_and_subscriptions(inproc: InProcess) -> None:
    health = inproc.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert inproc.client.get("/docs").status_code == 200
    spec = inproc.client.get("/openapi.json").json()
    examples = spec["components"]["schemas"]["JobRequest"]["examples"]
    assert examples[0] == {
        "type": "wait", "input": {"seconds": 5}, "owner": "microservice-x", "timeoutSeconds": 2,
    }  # fmt: skip
    subs = inproc.client.get("/dapr/subscribe").json()
    assert {s["pubsubname"] for s in subs} == {"jobqueue", "jobbroadcast"}


def test_swagger_examples_do_what_their_summaries_say(inproc: InProcess) -> None:
    """Every example Swagger offers for the two ways to start a job runs as it is and is
    answered as its summary says (POST /jobs waits only through its Prefer examples)."""
    spec = inproc.client.get("/openapi.json").json()

    def examples(path: str) -> dict[str, Any]:
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        found: dict[str, Any] = body["examples"]
        return found

    started = {
        name: inproc.client.post("/Jobs/StartJobWithTimeout", json=example["value"])
        for name, example in examples("/Jobs/StartJobWithTimeout").items()
    }
    assert {name: (r.status_code, r.json()["status"]) for name, r in started.items()} == {
        "wait-202": (202, "InProgress"),
        "wait-200": (200, "Completed"),
        "fail": (200, "Failed"),
    }
    assert "fail" in started["fail"].json()["error"]
    parameters = spec["paths"]["/jobs"]["post"]["parameters"]
    prefer = next(p for p in parameters if p["name"] == "Prefer")["examples"]
    assert {name: e["value"] for name, e in prefer.items()} == {
        "none": "",
        "wait": "wait=10",
        "respond-async": "respond-async",
    }
    for name, example in examples("/jobs").items():
        assert "timeoutSeconds" not in example["value"], name  # POST /jobs would ignore it
        at_once = inproc.client.post("/jobs", json=example["value"])
        assert (at_once.status_code, at_once.json()["status"]) == (202, "New"), name
        waited = inproc.client.post(
            "/jobs", json=example["value"], headers={"Prefer": prefer["wait"]["value"]}
        )
        assert waited.status_code == 200, (name, waited.text)
        assert waited.json()["status"] == ("Failed" if name == "fail" else "Completed")


def test_index_pages_across_minutes_days_and_replicas(inproc: InProcess) -> None:
    """Index parts written by two replicas over two days list newest first, page by page."""
    owner = f"history-{uuid.uuid4().hex[:6]}"
    now = time.time()
    stamps = [now - 86400 - 120, now - 86400, now - 3600, now - 65, now - 60, now - 5]
    jobs = []
    for i, ts in enumerate(stamps):
        job = dict(_seed_record(str(uuid.uuid4()), ts, owner), status="Completed")
        jobs.append((ts, job, "r1" if i % 2 else "r2"))
    items: list[dict[str, Any]] = []
    directories: dict[str, list[list[str]]] = {}
    parts: dict[str, list[list[Any]]] = {}
    for ts, job, replica in jobs:
        day, minute = minute_of(ts)
        directories.setdefault(day, [])
        if [minute, replica] not in directories[day]:
            directories[day].append([minute, replica])
        parts.setdefault(part_key(day, minute, replica), []).append([ts, job["id"], owner])
        items.append({"key": f"job-{job['id']}", "value": job})
    # Other jobs in the same directory days must not break anything: merge, don't replace.
    for day, entries in directories.items():
        url = f"http://127.0.0.1:{inproc.replica.http_port}/v1.0/state/statestore/"
        current = httpx.get(url + directory_key(day))
        merged = (current.json()["parts"] if current.content else []) + entries
        item = {"key": directory_key(day), "value": {"parts": merged}}
        if current.headers.get("etag"):
            item["etag"] = current.headers["etag"]
        items.append(item)
    items += [{"key": k, "value": {"jobs": v}} for k, v in parts.items()]
    _save(inproc, items)

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"owner": owner, "limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = inproc.client.get("/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [job["id"] for _, job, _ in sorted(jobs, key=lambda j: -j[0])]


def _seed_record(job_id: str, created: float, owner: str | None) -> dict[str, Any]:
    stamp = iso(created)
    return {
        "id": job_id, "type": "wait", "owner": owner, "status": "New", "input": {"seconds": 1},
        "progress": {"percent": 0, "message": ""}, "result": None, "error": None,
        "createdAt": stamp, "startedAt": None, "updatedAt": stamp, "completedAt": None,
        "attempt": 0, "maxAttempts": 1, "worker": None, "sequence": 1, "kind": "job",
    }  # fmt: skip


def _save(inproc: InProcess, items: list[dict[str, Any]]) -> None:
    port = inproc.replica.http_port
    resp = httpx.post(f"http://127.0.0.1:{port}/v1.0/state/statestore", json=items)
    assert resp.status_code == 204, resp.text


def test_subscription_routes_drop_what_is_no_job_event(inproc: InProcess) -> None:
    """Anyone may publish on the topic: poison must be dropped, never retried forever."""

    def deliver(path: str, body: bytes) -> Any:
        resp = inproc.client.post(
            path, content=body, headers={"content-type": "application/cloudevents+json"}
        )
        assert resp.status_code == 200
        return resp.json()["status"]

    def event(**data: Any) -> bytes:
        job = {"id": str(uuid.uuid4()), "status": "New", "sequence": 1, **data}
        return json.dumps({"type": "job.created", "data": job}).encode()

    for path in ("/internal/jobs/run", "/internal/jobs/changed"):
        for body in (
            b"",
            b"{oops",
            b"null",
            b"[]",
            b"[" * 50_000,
            event(id="a||b"),
            event(sequence="1"),
        ):
            assert deliver(path, body) == "DROP", (path, body[:20])
    assert deliver("/internal/jobs/run", event()) == "SUCCESS"  # a job that does not exist


def test_a_forged_broadcast_does_not_stop_a_running_job(inproc: InProcess) -> None:
    """Any app allowed to publish on the topic can send a final event for a job running here;
    the replica believes the store, not the event."""
    job = inproc.client.post("/jobs", json={"input": {"seconds": 1.5}}).json()
    wait_until(
        lambda: inproc.client.get(f"/jobs/{job['id']}").json()["status"] == "InProgress",
        timeout=10,
    )
    forged = {**job, "status": "Canceled", "sequence": 99, "changedBy": "not-a-replica"}
    url = f"http://127.0.0.1:{inproc.replica.http_port}/v1.0/publish/pubsub/{inproc.topic}"
    sent = httpx.post(url, params={"metadata.cloudevent.type": "job.canceled"}, json=forged)
    assert sent.status_code == 204, sent.text

    def stored() -> dict[str, Any]:
        answer: dict[str, Any] = inproc.client.get(f"/jobs/{job['id']}").json()
        return answer

    wait_until(lambda: stored()["status"] != "InProgress", timeout=10)
    done = stored()
    assert done["status"] == "Completed", done
    assert done["result"] == {"waitedSeconds": 1.5}
