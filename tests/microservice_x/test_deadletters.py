"""Dead-letter records: readable whatever was delivered, with the reason it was refused."""

from __future__ import annotations

import orjson

from microservice_x.deadletters import MAX_RAW_CHARS, dead_letter_from
from tests.microservice_x.test_events import cloud_event, job


def test_a_malformed_job_event_is_described_with_its_reason() -> None:
    event = cloud_event(id="poison-1", data=job(sequence="x"))
    entry = dead_letter_from(orjson.dumps(event), "t0")
    assert entry.id == "poison-1"
    assert (entry.type, entry.subject, entry.topic) == ("job.created", "job-1", "job-events")
    assert "data.sequence" in entry.reason
    assert entry.event == event
    assert entry.owner == "microservice-x"
    assert entry.receivedAt == "t0"


def test_a_valid_event_is_marked_as_a_failed_delivery() -> None:
    entry = dead_letter_from(orjson.dumps(cloud_event()), "t0")
    assert entry.reason.startswith("valid job event")


def test_a_body_that_is_not_json_is_kept_as_text_under_a_digest_id() -> None:
    body = b"\xff not json " + b"x" * (MAX_RAW_CHARS * 2)
    entry = dead_letter_from(body, "t0")
    assert entry.id.startswith("sha256:")
    assert entry.id == dead_letter_from(body, "t1").id
    assert "not JSON" in entry.reason
    assert entry.raw is not None and len(entry.raw) == MAX_RAW_CHARS


def test_json_that_is_not_an_object_is_kept() -> None:
    entry = dead_letter_from(b"[1, 2]", "t0")
    assert entry.event == [1, 2]
    assert entry.id.startswith("sha256:")
