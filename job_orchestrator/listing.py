"""GET /jobs pages and cursors; the query API listing (the index for other stores: index.py)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from job_orchestrator.errors import OrchestratorError
from job_orchestrator.jobs import Job
from job_orchestrator.store import JobStore


class BadCursor(OrchestratorError):
    status = 422
    title = "Invalid cursor"


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        raise BadCursor("cursor: not a cursor this API returned") from None
    if not isinstance(data, dict):
        raise BadCursor("cursor: not a cursor this API returned")
    return data


def query_for(
    owner: str | None, status: str | None, limit: int, token: str | None
) -> dict[str, Any]:
    """A Dapr state query for one page of jobs, newest first."""
    conditions: list[dict[str, Any]] = [{"EQ": {"kind": "job"}}]
    if owner:
        conditions.append({"EQ": {"owner": owner}})
    if status:
        conditions.append({"EQ": {"status": status}})
    page: dict[str, Any] = {"limit": limit}
    if token:
        page["token"] = token
    return {
        "filter": conditions[0] if len(conditions) == 1 else {"AND": conditions},
        "sort": [{"key": "createdAt", "order": "DESC"}],
        "page": page,
    }


class QueryListing:
    """Listing through the state store's query API (e.g. state.postgresql)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def page(
        self, owner: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page:
        token = decode_cursor(cursor).get("token") if cursor else None
        values, next_token = await self._store.query(query_for(owner, status, limit, token))
        items = [Job.from_record(v).public() for v in values]
        next_cursor = encode_cursor({"token": next_token}) if next_token and items else None
        return Page(items, next_cursor)
