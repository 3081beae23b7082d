"""Dead-lettered job events as microservice-x records them, with the reason they were refused.

Pure. Whatever reaches the dead-letter topic is kept in a readable form, even when it is not JSON.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, Field

from microservice_x.events import MAX_NESTING, MalformedEvent, parse_body, parse_event, too_deep

#: Poison bodies can be large; the record keeps this much of a body that is not JSON.
MAX_RAW_CHARS = 4096


class DeadLetter(BaseModel):
    """One event that could not be applied."""

    id: str = Field(description="CloudEvent id, or a digest of a body that has none")
    type: str | None = Field(default=None, examples=["job.updated"])
    subject: str | None = None
    topic: str | None = Field(default=None, examples=["job-events"])
    source: str | None = None
    owner: str | None = Field(default=None, description="data.owner, when readable")
    reason: str = Field(examples=["data.sequence: Field required"])
    receivedAt: str
    event: Any = Field(default=None, description="The event as delivered (JSON), if it was JSON")
    raw: str | None = Field(default=None, description="The body, when it was not JSON")


def _str_field(event: dict[str, Any], name: str) -> str | None:
    value = event.get(name)
    return value if isinstance(value, str) else None


def dead_letter_from(body: bytes, received_at: str) -> DeadLetter:
    """Describe a dead-lettered delivery; never fails, whatever the body holds."""
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    raw = body[:MAX_RAW_CHARS].decode("utf-8", errors="replace")
    try:
        event: object = parse_body(body)
    except MalformedEvent as exc:
        return DeadLetter(id=digest, reason=exc.reason, receivedAt=received_at, raw=raw)
    if too_deep(event):
        # Kept as text: nested this deep it could not be written back as JSON.
        reason = f"nests deeper than {MAX_NESTING} levels"
        return DeadLetter(id=digest, reason=reason, receivedAt=received_at, raw=raw)
    try:
        parse_event(event)
        # A valid event is dead-lettered when its deliveries failed, not for its content.
        reason = "valid job event; its delivery failed"
    except MalformedEvent as exc:
        reason = exc.reason
    if not isinstance(event, dict):
        return DeadLetter(id=digest, reason=reason, receivedAt=received_at, event=event)
    event_id = _str_field(event, "id")
    data = event.get("data")
    return DeadLetter(
        id=event_id or digest,
        type=_str_field(event, "type"),
        subject=_str_field(event, "subject"),
        topic=_str_field(event, "topic"),
        source=_str_field(event, "source"),
        owner=_str_field(data, "owner") if isinstance(data, dict) else None,
        reason=reason,
        receivedAt=received_at,
        event=event,
    )
