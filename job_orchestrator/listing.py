"""GET /jobs pages and cursors; the query API listing (the index for other stores: index.py writes
it, index_pages.py reads it)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

from job_orchestrator.errors import OrchestratorError
from job_orchestrator.jobs import Job, valid_job_id
from job_orchestrator.store import JobStore, job_key

logger = logging.getLogger(__name__)


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


_NOT_OURS = "cursor: not a cursor this API returned"

#: The latest ``createdAt`` a datetime can hold (9999-12-31T23:59:59Z): a page starts there.
_LAST_STAMP = 253402300799.0


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        raise BadCursor(_NOT_OURS) from None
    if not isinstance(data, dict):
        raise BadCursor(_NOT_OURS)
    return data


def decode_position(cursor: str) -> list[Any]:
    """``[createdAt, id]`` of an index cursor (``{"after": ...}``), or BadCursor.

    The cursor comes from the client: anything decodable reaches here, so its shape is checked
    before the scan takes ``createdAt`` as a time and a sort key.
    """
    after = decode_cursor(cursor).get("after")
    if not (isinstance(after, list) and len(after) == 2 and isinstance(after[1], str)):
        raise BadCursor(_NOT_OURS)
    stamp = after[0]
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise BadCursor(_NOT_OURS)
    if not 0 <= stamp <= _LAST_STAMP:  # also refuses NaN
        raise BadCursor(_NOT_OURS)
    return after


class Position(NamedTuple):
    """Where a row stands in the listing's order: ``createdAt`` (newest first), then ``id``."""

    created_at: str
    id: str

    def precedes(self, other: Position) -> bool:
        return self.created_at > other.created_at or (
            self.created_at == other.created_at and self.id < other.id
        )


class QueryCursor(NamedTuple):
    token: str  #: the query API's page token, where the next query starts
    passed: Position | None  #: the last row the pages reached: any row up to it was listed
    held: bool  #: that row was held back, so the next page opens with it


def decode_query_cursor(cursor: str) -> QueryCursor:
    """A query cursor (``{"token": ..., "passed": [createdAt, id], "held": ...}``), or
    BadCursor."""
    data = decode_cursor(cursor)
    token, passed, held = data.get("token"), data.get("passed"), data.get("held", False)
    if not isinstance(token, str) or not token or not isinstance(held, bool):
        raise BadCursor(_NOT_OURS)
    if passed is None:
        return QueryCursor(token, None, False)
    position = _position(passed)
    if position is None:
        raise BadCursor(_NOT_OURS)
    return QueryCursor(token, position, held)


def encode_query_cursor(cursor: QueryCursor) -> str:
    return encode_cursor({"token": cursor.token, "passed": cursor.passed, "held": cursor.held})


def split_rows(
    values: list[dict[str, Any]], limit: int, token: str, cursor: QueryCursor | None
) -> tuple[list[str], QueryCursor | None]:
    """The ids a page shows and the cursor after it, from a query that asked ``limit`` rows.

    A query reads one row more than its page shows: the page opens with the row the page
    before held back, or else asks ``limit + 1`` rows. When the answer is full, its last new
    row is held back for the next page, which proves that one follows without a second query
    (page tokens are opaque: no query can start inside an answer). Rows at or before the
    position the pages reached are left out: page tokens are offsets on state.postgresql, so
    each job created meanwhile pushes an already listed row into the next answer. Rows with no
    job id or ``createdAt`` are dropped (another app's rows).
    """
    passed = cursor.passed if cursor else None
    rows = [_position([value.get("createdAt"), value.get("id")]) for value in values]
    new = [row for row in rows if row is not None and (passed is None or passed.precedes(row))]
    full = bool(token) and len(rows) >= limit
    shown, last = (new[:-1], new[-1:]) if full else (new, [])
    opening = [passed] if cursor and cursor.held and passed else []
    # Once each: another app's row may carry the id of one of our jobs.
    ids = list(dict.fromkeys(row.id for row in opening + shown))
    if not full:
        return ids, None
    return ids, QueryCursor(token, last[0] if last else passed, bool(last))


def _position(value: object) -> Position | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    created_at, job_id = value
    if isinstance(created_at, str) and isinstance(job_id, str) and valid_job_id(job_id):
        return Position(created_at, job_id)
    return None


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
        # The id breaks ties (jobs created in one millisecond): page tokens are offsets on
        # state.postgresql, and rows in no fixed order would be skipped or repeated.
        "sort": [{"key": "createdAt", "order": "DESC"}, {"key": "id", "order": "ASC"}],
        "page": page,
    }


class QueryListing:
    """Listing through the state store's query API (e.g. state.postgresql).

    The query finds the page's jobs; their records are then read by key, so what is listed is
    what ``GET /jobs/{id}`` answers: the query runs over the whole table, whose rows other apps
    sharing the store may have written (with ``"kind": "job"`` or anything else), and returns
    rows whose TTL has passed until the store's cleanup deletes them.
    """

    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def page(
        self, owner: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page:
        after = decode_query_cursor(cursor) if cursor else None
        wanted = limit if after and after.held else limit + 1
        token = after.token if after else None
        found = await self._store.query(query_for(owner, status, wanted, token))
        ids, following = split_rows(found.values, found.limit, found.token, after)
        items = await self._jobs(ids, owner, status)
        return Page(items, encode_query_cursor(following) if following else None)

    async def _jobs(
        self, ids: list[str], owner: str | None, status: str | None
    ) -> list[dict[str, Any]]:
        """The jobs ``ids`` as stored under this app's keys, in order."""
        found = await self._store.bulk_get([job_key(i) for i in ids])
        items = []
        for job_id in ids:
            record = found.get(job_key(job_id))
            if record is None or record.get("kind") != "job" or record.get("id") != job_id:
                continue  # another app's row, or expired or deleted since
            if (owner and record.get("owner") != owner) or (
                status and record.get("status") != status
            ):
                continue
            try:
                items.append(Job.from_record(record).public())
            except (KeyError, TypeError, ValueError) as exc:
                logger.warning("job %s: its record cannot be read (%r); not listed", job_id, exc)
        return items
