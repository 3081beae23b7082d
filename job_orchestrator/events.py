"""Shape of the job events on ``job-events``: CloudEvent type per change, and reading them back."""

from __future__ import annotations

import base64
import json
from typing import Any

from job_orchestrator.jobs import Job, JobStatus

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


def event_type(job: Job) -> str:
    return _BY_STATUS[job.status]


def event_type_name(job: dict[str, Any]) -> str:
    """The event type for a job in its public (dict) form."""
    return _BY_STATUS[JobStatus(job["status"])]


def outbox_metadata(job: Job) -> dict[str, str]:
    """Per-operation metadata that makes the outbox publish a well-typed CloudEvent."""
    return {
        "cloudevent.type": event_type(job),
        "cloudevent.subject": job.id,
        "contentType": "application/json",
    }


def event_payload(job: Job) -> bytes:
    """The event data: the public job, ``owner`` and ``sequence`` included."""
    return json.dumps(job.public(), separators=(",", ":")).encode()


class MalformedEvent(ValueError):
    """A delivered CloudEvent carries no job."""


def job_from_event(cloud_event: dict[str, Any]) -> dict[str, Any]:
    """The job (public form) inside a delivered CloudEvent, whatever way its data was encoded."""
    data: Any = cloud_event.get("data")
    if data is None and "data_base64" in cloud_event:
        data = base64.b64decode(cloud_event["data_base64"])
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise MalformedEvent("event data is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise MalformedEvent("event data is not a job")
    return data
