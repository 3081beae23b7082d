"""Bad CloudEvents against the running microservice-x: posted to its event routes as the sidecar
would deliver them, and published through the real sidecars as raw or structured payloads.

The promise: a malformed, oversized, wrongly typed or truncated event is answered DROP (or 4xx),
never 5xx or RETRY (a RETRY would bring the poison back forever); afterwards the service still
answers /healthz and still applies good events, delivered directly or through the sidecar.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.checks import FUZZ_SETTINGS
from tests.fuzz.conftest import Stack
from tests.microservice_x.stack import MX, cloud_event, get_json, http, job_data, wait_for

JOBS_ROUTE = "/events/jobs"
DEAD_LETTERS_ROUTE = "/events/dead-letters"


def new_id() -> str:
    return f"fuzz-{uuid.uuid4().hex[:12]}"


def good_event(job_id: str | None = None, **data: Any) -> dict[str, Any]:
    job_id = job_id or new_id()
    return cloud_event(job_id, "job.created", job_data(job_id, "job.created", 1, **data))


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"deeper": value}
    return value


def post_raw(stack: Stack, route: str, body: bytes, content_type: str) -> tuple[int, Any]:
    status, headers, answer = http("POST", stack.mx.url + route, body, content_type=content_type)
    if status >= 400:
        assert headers.get("content-type", "").startswith("application/problem+json"), answer
    return status, answer


def assert_dropped(
    stack: Stack, body: bytes, content_type: str = "application/cloudevents+json"
) -> None:
    status, answer = post_raw(stack, JOBS_ROUTE, body, content_type)
    assert (status, answer) == (200, {"status": "DROP"}) or 400 <= status < 500, (
        status,
        answer,
        body[:200],
    )


def assert_still_serving(stack: Stack) -> None:
    """The process lives, answers /healthz and applies a good event posted to it."""
    stack.check_alive()
    assert get_json(f"{stack.mx.url}/healthz")["status"] == "ok"
    event = good_event()
    status, answer = post_raw(stack, JOBS_ROUTE, json.dumps(event).encode(), "application/json")
    assert (status, answer) == (200, {"status": "SUCCESS"})
    assert get_json(f"{stack.mx.url}/jobs/{event['subject']}")["status"] == "New"


VALID = json.dumps(good_event("fuzz-truncated")).encode()

#: Bodies that are not a job event at all: not JSON, not UTF-8, cut short, not an object, huge.
BROKEN_BODIES: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b" \n\t ",
    "not json": b"{oops",
    "invalid utf-8": b'{"id": "\xff\xfe", "type": "job.created"}',
    "lone surrogate": b'{"id": "\\ud800", "type": "job.created"}',
    "nan": b'{"id": "x", "type": "job.created", "data": NaN}',
    "infinite number": b'{"id": "x", "type": "job.created", "data": 1e400}',
    "json null": b"null",
    "json string": b'"job.created"',
    "json array": json.dumps([good_event()]).encode(),
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "8 MB of spaces then an object": b" " * (8 << 20) + b"{}",
    **{f"truncated at {n}": VALID[:n] for n in (1, 10, len(VALID) // 2, len(VALID) - 1)},
}


@pytest.mark.parametrize("name", BROKEN_BODIES)
def test_a_broken_body_is_dropped(stack: Stack, name: str) -> None:
    assert_dropped(stack, BROKEN_BODIES[name])


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    event = good_event()
    target = event
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return event


#: Every field the service reads, given a value of the wrong type or out of range. The owner is
#: always ours, so none of these is "not ours, ignored": each one must be refused.
WRONG_TYPES: list[tuple[tuple[str, ...], Any]] = [
    *[(("id",), v) for v in (None, 7, "", [], {})],
    *[(("type",), v) for v in (None, 7, "job.exploded", ["job.created"], {})],
    *[(("subject",), v) for v in (7, [], "another-job")],
    *[(("time",), v) for v in (7, [], {})],
    *[(("source",), v) for v in (7, {})],
    *[(("data",), v) for v in (None, 7, "{truncated", [], True)],
    *[(("data", "id"), v) for v in (None, 7, "", "a||b", "x" * 201, "tab\there")],
    *[(("data", "status"), v) for v in (None, 7, "Running", ["New"])],
    *[(("data", "sequence"), v) for v in (None, "1", 1.5, -1, True, [])],
    *[(("data", "progress"), v) for v in (7, "half", [50])],
    *[(("data", "progress", "percent"), v) for v in (-1, 101, "50", True)],
    *[(("data", "owner"), v) for v in (7, [MX], {"name": MX})],
    *[(("data", "attempt"), v) for v in ("1", 1.5)],
    *[(("data", "cancelRequested"), v) for v in ("yes", 1)],
]


@pytest.mark.parametrize(
    ("path", "value"), WRONG_TYPES, ids=[f"{'.'.join(p)}={v!r}"[:60] for p, v in WRONG_TYPES]
)
def test_a_wrongly_typed_field_is_dropped(stack: Stack, path: tuple[str, ...], value: Any) -> None:
    event = _with(path, value)
    if path[0] == "data" and len(path) > 1:
        event["subject"] = None  # only the field under test is wrong
    assert_dropped(stack, json.dumps(event).encode())
    job_id = event["data"]["id"] if isinstance(event["data"], dict) else None
    if isinstance(job_id, str) and job_id and "||" not in job_id and len(job_id) <= 200:
        status, _, _ = http("GET", f"{stack.mx.url}/jobs/{quote(job_id, safe='')}")
        assert status == 404, f"a refused event created job {job_id}"


def dead_letter(stack: Stack, letter_id: str) -> dict[str, Any] | None:
    letters = get_json(f"{stack.mx.url}/dead-letters?limit=500")
    return next((d for d in letters if d["id"] == letter_id), None)


def digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("depth", [100, 300])
def test_a_deeply_nested_event_is_applied_or_dropped_and_recorded(stack: Stack, depth: int) -> None:
    # orjson reads 1024 levels, pydantic writes 255: a job nested deeper than the service can
    # store must be refused (DROP), never turned into a 500 that the sidecar would retry.
    event = good_event(input=nested(depth))
    body = json.dumps(event).encode()
    status, answer = post_raw(stack, JOBS_ROUTE, body, "application/json")
    expected = {"status": "SUCCESS"} if depth < 200 else {"status": "DROP"}
    assert (status, answer) == (200, expected)
    if depth >= 200:
        # The dead-letter route records it (as text, under a digest of the body).
        status, answer = post_raw(stack, DEAD_LETTERS_ROUTE, body, "application/json")
        assert (status, answer) == (200, {"status": "SUCCESS"})
        letter = dead_letter(stack, digest(body))
        assert letter is not None and "deeper" in letter["reason"], letter


def test_an_oversized_event_is_dropped_and_recorded_not_retried(stack: Stack) -> None:
    # Too large for a state write (gRPC's 4 MiB): a RETRY here would bring it back forever.
    event = good_event(input={"blob": "x" * (6 << 20)})
    body = json.dumps(event).encode()
    status, answer = post_raw(stack, JOBS_ROUTE, body, "application/json")
    assert (status, answer) == (200, {"status": "DROP"})
    status, answer = post_raw(stack, DEAD_LETTERS_ROUTE, body, "application/json")
    assert (status, answer) == (200, {"status": "SUCCESS"})
    letter = dead_letter(stack, digest(body))
    assert letter is not None and "bytes" in letter["reason"], letter
    assert len(letter["raw"]) <= 4096
    status, _, _ = http("GET", f"{stack.mx.url}/jobs/{event['subject']}")
    assert status == 404


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ_SETTINGS
@given(
    data=st.fixed_dictionaries(
        {"id": st.text(max_size=10) | JSON_VALUES, "status": JSON_VALUES, "sequence": JSON_VALUES},
        optional={"progress": JSON_VALUES, "owner": st.just(MX), "input": JSON_VALUES},
    ),
    envelope=st.dictionaries(
        st.sampled_from(["id", "type", "subject", "time", "source", "data_base64"]),
        JSON_VALUES,
        max_size=4,
    ),
)
def test_generated_events_never_fail_the_delivery(
    stack: Stack, data: dict[str, Any], envelope: dict[str, Any]
) -> None:
    event = {**good_event(), "data": data, **envelope}
    body = json.dumps(event).encode()
    for route in (JOBS_ROUTE, DEAD_LETTERS_ROUTE):
        status, answer = post_raw(stack, route, body, "application/cloudevents+json")
        assert status == 200 and answer in ({"status": "SUCCESS"}, {"status": "DROP"}), (
            route,
            status,
            answer,
        )


@pytest.fixture(autouse=True)
def _still_serving(stack: Stack) -> Iterator[None]:
    yield
    assert_still_serving(stack)


def publish_raw(stack: Stack, body: bytes, content_type: str) -> None:
    """Publish ``body`` as is (no CloudEvent envelope) on job-events, from the other sidecar."""
    url = (
        f"{stack.orchestrator_sidecar.url}/v1.0/publish/pubsub/job-events?metadata.rawPayload=true"
    )
    status, _, answer = http("POST", url, body, content_type=content_type)
    assert status == 204, (status, answer)


def publish_and_wait_applied(stack: Stack) -> None:
    """A good event published through the sidecars after the junk still reaches the view."""
    event = good_event()
    stack.orchestrator_sidecar.publish(event)
    wait_for(
        lambda: http("GET", f"{stack.mx.url}/jobs/{event['subject']}")[0] == 200,
        timeout=20,
        what="the good event published after the junk",
    )


#: Raw bodies for the broker: the sidecars must dead-letter or drop them, never stall or crash.
RAW_PAYLOADS = {k: v for k, v in BROKEN_BODIES.items() if len(v) < (1 << 20)}


def test_raw_junk_published_through_the_sidecar_does_not_stop_delivery(stack: Stack) -> None:
    for body in RAW_PAYLOADS.values():
        publish_raw(stack, body, "application/octet-stream")
    publish_raw(stack, json.dumps(good_event(owner="someone-else")).encode(), "text/plain")
    publish_and_wait_applied(stack)
    for sidecar in (stack.mx_sidecar, stack.orchestrator_sidecar):
        assert http("GET", f"{sidecar.url}/v1.0/healthz")[0] == 204


def test_malformed_events_of_ours_through_the_sidecar_end_as_dead_letters(stack: Stack) -> None:
    # Each matches the subscription's rule (data.owner is ours), so it reaches the app, which
    # answers DROP; the sidecar dead-letters it and the dead-letter route records the reason.
    poisons = [
        _with(path, value) for path, value in WRONG_TYPES if path[0] == "data" and len(path) > 1
    ]
    poisons = [p for p in poisons if isinstance(p["data"], dict) and p["data"]["owner"] == MX]
    for poison in poisons:
        poison["subject"] = None
        stack.orchestrator_sidecar.publish(poison)
    wanted = {p["id"] for p in poisons}

    def all_recorded() -> bool:
        letters = get_json(f"{stack.mx.url}/dead-letters?limit=500")
        return wanted <= {d["id"] for d in letters}

    wait_for(all_recorded, timeout=30, what=f"{len(wanted)} dead letters")
    publish_and_wait_applied(stack)
    assert get_json(f"{stack.orchestrator.url}/healthz")["status"] == "ok"
