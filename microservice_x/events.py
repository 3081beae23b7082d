"""The job events the orchestrator publishes, checked before they touch any state.

Pure: a delivered CloudEvent is parsed into a JobEvent or rejected with a reason a human can read,
so the subscriber can answer DROP (dead letter) instead of crashing or retrying forever.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CREATED = "job.created"
JOB_EVENT_TYPES = frozenset({CREATED, "job.updated", "job.completed", "job.failed", "job.canceled"})
JobStatus = Literal["New", "InProgress", "Completed", "Failed", "Canceled"]
FINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})
#: A final event must carry the status it announces; anything else is a corrupt event.
STATUS_OF_FINAL_TYPE = {
    "job.completed": "Completed",
    "job.failed": "Failed",
    "job.canceled": "Canceled",
}
#: Job ids become state keys; Dapr rejects keys containing its separator `||`.
MAX_JOB_ID_LENGTH = 200
#: Larger than any job of ours (the orchestrator takes bodies up to 256 KiB) and too large to
#: store (gRPC caps a SaveState at 4 MiB): refused at once rather than retried forever.
MAX_EVENT_BYTES = 1 << 20
#: The view is written by pydantic, whose serializer stops at 255 levels; the job's own fields
#: sit a few levels under the view's root, so deeper events could never be stored.
MAX_NESTING = 200


class MalformedEvent(ValueError):
    """A delivered event that can never be applied; redelivering it would not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobProgress(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    percent: float | None = Field(default=None, ge=0, le=100, examples=[40])
    message: str | None = Field(default=None, examples=["step 2 of 5"])


class JobData(BaseModel):
    """The job as the orchestrator publishes it in an event's `data`."""

    model_config = ConfigDict(strict=True, extra="ignore")

    id: str = Field(
        min_length=1,
        max_length=MAX_JOB_ID_LENGTH,
        examples=["702517a5-dff4-4597-9e8a-3ed0012ac8cf"],
    )
    type: str | None = Field(default=None, examples=["wait"])
    owner: str | None = Field(default=None, examples=["microservice-x"])
    status: JobStatus = Field(examples=["Completed"])
    input: Any = None
    progress: JobProgress | None = None
    result: Any = None
    error: Any = None
    createdAt: str | None = None
    startedAt: str | None = None
    updatedAt: str | None = None
    completedAt: str | None = None
    attempt: int | None = None
    maxAttempts: int | None = None
    runTimeoutSeconds: float | None = None
    durationSeconds: float | None = None
    cancelRequested: bool | None = None
    handedBack: bool | None = None
    worker: str | None = None
    #: Grows with every change of the job: orders its events.
    sequence: int = Field(ge=0, examples=[3])


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One validated job event: the CloudEvent fields the view needs plus the job."""

    id: str
    type: str
    source: str | None
    time: str | None
    job: JobData


def parse_body(body: bytes) -> object:
    """Decode a delivery body; a body that is not JSON, or too large to keep, is malformed."""
    if len(body) > MAX_EVENT_BYTES:
        raise MalformedEvent(f"event of {len(body)} bytes is over {MAX_EVENT_BYTES}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from None


def too_deep(value: object) -> bool:
    """Whether JSON ``value`` nests objects/arrays more than MAX_NESTING levels."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_NESTING:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _optional_str(event: dict[str, Any], name: str) -> str | None:
    value = event.get(name)
    if value is None or isinstance(value, str):
        return value
    raise MalformedEvent(f"CloudEvent `{name}` must be a string, got {type(value).__name__}")


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "data"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"data.{where}: {first['msg']}{more}"


def _job_data(raw: object) -> JobData:
    if isinstance(raw, str):
        # Some publishers put JSON text in `data` instead of the object itself.
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise MalformedEvent("CloudEvent `data` is a string that is not JSON") from None
    if not isinstance(raw, dict):
        raise MalformedEvent(f"CloudEvent `data` must be the job object, got {type(raw).__name__}")
    try:
        job = JobData.model_validate(raw)
    except ValidationError as exc:
        raise MalformedEvent(_describe(exc)) from None
    if "||" in job.id or not job.id.isprintable():
        raise MalformedEvent(f"data.id {job.id!r} cannot be a state key")
    return job


def parse_event(event: object) -> JobEvent:
    """Validate a decoded CloudEvent carrying a job; raise MalformedEvent with the reason."""
    if not isinstance(event, dict):
        raise MalformedEvent(f"a CloudEvent must be a JSON object, got {type(event).__name__}")
    if too_deep(event):
        raise MalformedEvent(f"CloudEvent nests deeper than {MAX_NESTING} levels")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("CloudEvent `id` is missing or not a non-empty string")
    event_type = event.get("type")
    if not isinstance(event_type, str) or event_type not in JOB_EVENT_TYPES:
        raise MalformedEvent(
            f"CloudEvent `type` {event_type!r} is not one of {sorted(JOB_EVENT_TYPES)}"
        )
    if "data" in event:
        job = _job_data(event["data"])
    elif isinstance(event.get("data_base64"), str):
        try:
            job = _job_data(base64.b64decode(event["data_base64"], validate=True).decode())
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedEvent("CloudEvent `data_base64` is not base64 of UTF-8 JSON") from None
    else:
        raise MalformedEvent("CloudEvent has no `data` (the job)")
    subject = _optional_str(event, "subject")
    if subject and subject != job.id:
        raise MalformedEvent(f"CloudEvent `subject` {subject!r} is not the job id {job.id!r}")
    expected = STATUS_OF_FINAL_TYPE.get(event_type)
    if expected is not None and job.status != expected:
        raise MalformedEvent(f"{event_type} carries status {job.status!r}, not {expected!r}")
    return JobEvent(
        id=event_id,
        type=event_type,
        source=_optional_str(event, "source"),
        time=_optional_str(event, "time"),
        job=job,
    )


def is_bulk(body: object) -> bool:
    """Whether a delivery is a Dapr bulk-subscribe message rather than one CloudEvent."""
    return isinstance(body, dict) and isinstance(body.get("entries"), list)


def bulk_entries(message: dict[str, Any]) -> list[tuple[str, JobEvent | MalformedEvent]]:
    """Each entry of a bulk message: its ``entryId`` and its parsed event or why it is bad.

    An entry without a string ``entryId`` cannot be answered and is left out (Dapr treats an
    entry missing from the answer as failed and retries it).
    """
    parsed: list[tuple[str, JobEvent | MalformedEvent]] = []
    for entry in message["entries"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("entryId"), str):
            continue
        try:
            parsed.append((entry["entryId"], parse_event(entry.get("event"))))
        except MalformedEvent as exc:
            parsed.append((entry["entryId"], exc))
    return parsed
