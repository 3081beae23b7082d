"""Validation of delivered job events: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from microservice_x.events import MalformedEvent, parse_body, parse_event


def job(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "job-1",
        "type": "wait",
        "owner": "microservice-x",
        "status": "New",
        "input": {"seconds": 1},
        "progress": {"percent": 0.0, "message": ""},
        "result": None,
        "error": None,
        "createdAt": "2026-11-22T10:00:00.000Z",
        "startedAt": None,
        "updatedAt": "2026-11-22T10:00:00.000Z",
        "completedAt": None,
        "attempt": 0,
        "maxAttempts": 1,
        "worker": None,
        "sequence": 1,
    }
    data.update(changes)
    return data


def cloud_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "ce-1",
        "source": "job-orchestrator",
        "type": "job.created",
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "subject": "job-1",
        "topic": "job-events",
        "pubsubname": "pubsub",
        "time": "2026-11-22T10:00:00Z",
        "data": job(),
    }
    event.update(changes)
    return event


def test_a_well_formed_event_is_parsed() -> None:
    event = parse_event(cloud_event())
    assert event.id == "ce-1"
    assert event.type == "job.created"
    assert event.source == "job-orchestrator"
    assert event.time == "2026-11-22T10:00:00Z"
    assert event.job.id == "job-1"
    assert event.job.owner == "microservice-x"
    assert event.job.sequence == 1
    assert event.job.progress is not None and event.job.progress.percent == 0


def test_unknown_extra_fields_of_the_job_are_tolerated() -> None:
    event = parse_event(cloud_event(data=job(somethingNew=True, durationSeconds=1.5)))
    assert event.job.durationSeconds == 1.5


def test_data_as_json_text_or_base64_is_accepted() -> None:
    text = orjson.dumps(job()).decode()
    assert parse_event(cloud_event(data=text)).job.id == "job-1"
    encoded = cloud_event(data_base64=base64.b64encode(text.encode()).decode())
    del encoded["data"]
    assert parse_event(encoded).job.id == "job-1"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        (cloud_event(id=""), "`id` is missing"),
        (cloud_event(id=7), "`id` is missing"),
        (cloud_event(type="com.dapr.event.sent"), "`type` 'com.dapr.event.sent' is not one of"),
        (cloud_event(type={"a": 1}), "`type`"),
        ({k: v for k, v in cloud_event().items() if k != "data"}, "no `data`"),
        (cloud_event(data="not json"), "string that is not JSON"),
        (cloud_event(data=[1]), "must be the job object, got list"),
        (cloud_event(data=job(sequence="3")), "data.sequence: Input should be a valid integer"),
        (cloud_event(data=job(sequence=True)), "data.sequence"),
        (cloud_event(data=job(sequence=-1)), "data.sequence"),
        (cloud_event(data={"id": "job-1", "status": "New"}), "data.sequence: Field required"),
        (cloud_event(data=job(status="Running")), "data.status"),
        (cloud_event(data=job(id="")), "data.id"),
        (cloud_event(data=job(id="a||b"), subject="a||b"), "cannot be a state key"),
        (cloud_event(data=job(progress={"percent": 150})), "data.progress.percent"),
        (cloud_event(data=job(owner=5)), "data.owner"),
        (cloud_event(subject="job-2"), "`subject` 'job-2' is not the job id 'job-1'"),
        (cloud_event(type="job.completed"), "job.completed carries status 'New'"),
        (cloud_event(time=12), "`time` must be a string"),
        (
            {**{k: v for k, v in cloud_event().items() if k != "data"}, "data_base64": "%%%"},
            "not base64",
        ),
    ],
)
def test_a_malformed_event_is_refused_with_its_reason(event: object, reason: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_event(event)
    assert reason in caught.value.reason


def test_a_body_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="body is not JSON"):
        parse_body(b"{oops")
    assert parse_body(b'{"a": 1}') == {"a": 1}
