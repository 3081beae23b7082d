"""Pure reading of the services' timestamps: when a job changed and when an event arrived."""

from __future__ import annotations

from datetime import datetime
from typing import Any

FINAL_EVENTS = ("job.completed", "job.failed", "job.canceled")


def parse_time(value: object) -> float | None:
    """RFC 3339 / ISO 8601 text (``Z`` or an offset) as epoch seconds; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def received_at(view: dict[str, Any], event_type: str) -> float | None:
    """When microservice-x received the first event of this type for the job (epoch s)."""
    for record in view.get("events") or []:
        if record.get("type") == event_type:
            return parse_time(record.get("receivedAt"))
    return None


def final_received_at(view: dict[str, Any]) -> float | None:
    """When microservice-x received the job's final event, if it has."""
    for event_type in FINAL_EVENTS:
        moment = received_at(view, event_type)
        if moment is not None:
            return moment
    return None


def delivery_ms(view: dict[str, Any]) -> dict[str, float]:
    """Per event type, ms from the job change that published it to its arrival in microservice-x.

    The change time is the job's own timestamp (createdAt for job.created, completedAt for the
    final event), set just before the transaction that saves and publishes the change.
    """
    delays: dict[str, float] = {}
    created = parse_time(view.get("createdAt"))
    arrived = received_at(view, "job.created")
    if created is not None and arrived is not None:
        delays["job.created"] = (arrived - created) * 1000
    completed = parse_time(view.get("completedAt"))
    arrived_final = final_received_at(view)
    if completed is not None and arrived_final is not None:
        delays["final"] = (arrived_final - completed) * 1000
    return delays
