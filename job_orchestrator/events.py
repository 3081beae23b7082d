"""Shape of the job events on ``job-events``: CloudEvent type per change, and reading them back."""

from __future__ import annotations

import base64
import json
from typing import Any

from dapr_support.jsonbytes import dumps
from job_orchestrator.jobs import Job, JobStatus, valid_job_id

CREATED = "job.created"
UPDATED = "job.updated"
COMPLETED = "job.completed"
FAILED = "job.failed"
CANCELED = "job.canceled"
FINAL_EVENT_TYPES = (COMPLETED, FAILED, CANCELED)

_BY_STATUS = {
    JobStatus.NEW: CREATED,
    JobStatus.IN_PROGRESS: UPDATED,
    JobStatus.COMPLETED: COMPLETED,
    JobStatus.FAILED: FAILED,
    JobStatus.CANCELED: CANCELED,
}


_STATUS_NAMES = frozenset(s.value for s in JobStatus)
#: Integers from here on may have lost digits in an event: daprd's outbox relay reads each
#: event back with Go's json.Unmarshal, which makes every number a float64.
_EXACT_LIMIT = 2**53


def event_type(job: Job) -> str:
    return _BY_STATUS[job.status]


def event_type_name(job: dict[str, Any]) -> str:
    """The event type for a job in its public (dict) form."""
    return _BY_STATUS[JobStatus(job["status"])]


def outbox_metadata(job: Job) -> dict[str, str]:
    """Per-operation metadata that makes the outbox publish a well-typed CloudEvent.

    daprd's outbox copies an operation's metadata onto its event as is (``cloudevent.``
    overrides are for plain publishes only), so the fields are named as in the event. The job's
    trace goes in both trace fields: subscribers continue the trace of the creating request.
    """
    meta = {"type": event_type(job), "subject": job.id, "contentType": "application/json"}
    if job.traceparent is not None:
        meta["traceparent"] = meta["traceid"] = job.traceparent
    return meta


def event_payload(public: dict[str, Any], changed_by: str) -> bytes:
    """The event data: the public job (``Job.public()``, ``owner`` and ``sequence`` included),
    and ``changedBy``: the replica that wrote this change (it needs no broadcast of its own
    changes)."""
    return dumps({**public, "changedBy": changed_by})


class MalformedEvent(ValueError):
    """A delivered message is no job event of ours (anyone may publish on the topic)."""


def parse_event(body: bytes) -> dict[str, Any]:
    """The CloudEvent in a delivery body, or MalformedEvent."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedEvent("the body is not JSON") from None
    if not isinstance(event, dict):
        raise MalformedEvent("the body is not a CloudEvent object")
    return event


def job_from_event(cloud_event: dict[str, Any]) -> dict[str, Any]:
    """The job (public form) inside a delivered CloudEvent, whatever way its data was encoded.

    Only what the receivers rely on is checked: a usable id, an integer sequence, a status.
    """
    data: Any = cloud_event.get("data")
    if data is None and isinstance(cloud_event.get("data_base64"), str):
        try:
            data = base64.b64decode(cloud_event["data_base64"])
        except ValueError:
            raise MalformedEvent("data_base64 is not base64") from None
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise MalformedEvent("event data is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedEvent("event data is not a job")
    job_id, sequence, status = data.get("id"), data.get("sequence"), data.get("status")
    if not isinstance(job_id, str) or not valid_job_id(job_id):
        raise MalformedEvent("event data has no usable job id")
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise MalformedEvent("event data has no integer sequence")
    if status not in _STATUS_NAMES:
        raise MalformedEvent("event data has no known job status")
    data.pop("changedBy", None)  # who wrote it: for the broadcast's rule, not for clients
    return data


def may_be_rounded(job: dict[str, Any]) -> bool:
    """Whether a job read from an event may differ from the stored one: it holds an integer
    a float64 may not have kept (its input or result, as daprd's outbox relayed it)."""
    todo: list[Any] = [job]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= _EXACT_LIMIT:
            return True
    return False
