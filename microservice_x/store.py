"""microservice-x's own records in the Dapr state store: job views, their index, dead letters.

Plain SaveState with etags (records.py), never a transaction: the `statestore` component carries
an outbox, and every transactional upsert on it would be published as a job event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

import orjson
from pydantic import ValidationError

from dapr_support.clients import ClientKeeper
from dapr_support.etags import COUNTING_STORE
from microservice_x.deadletters import DeadLetter
from microservice_x.errors import CorruptRecord, StoreError
from microservice_x.events import CREATED, JobEvent
from microservice_x.index import SEGMENT_SIZE, JobIndex, Position
from microservice_x.known_views import KnownViews
from microservice_x.records import Change, Read, Records, decode_list
from microservice_x.view import JobView, Outcome, Reduction, apply_event

T = TypeVar("T")

logger = logging.getLogger(__name__)

JOB_KEY_PREFIX = "job:"
DEAD_LETTERS_KEY = "dead-letters"
MAX_DEAD_LETTERS = 500
#: Indexed jobs one listing call looks at, at most.
MAX_SCAN = 2_000
#: Views read at once while a status filter looks for matches.
STATUS_CHUNK = 100


async def _take(entries: AsyncIterator[T], count: int) -> list[T]:
    """Up to ``count`` next items of ``entries``."""
    taken: list[T] = []
    while len(taken) < count:
        item = await anext(entries, None)
        if item is None:
            break
        taken.append(item)
    return taken


def _decode_view(key: str, data: bytes) -> JobView:
    try:
        return JobView.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise CorruptRecord(f"stored record {key!r} is not a job view ({problems})") from exc


def _folding(key: str, events: list[tuple[JobEvent, str]]) -> Change[list[Reduction]]:
    """The change that applies ``events`` in order to the view stored at ``key``."""

    def change(current: bytes | None) -> tuple[bytes | None, list[Reduction]]:
        view = None if current is None else _decode_view(key, current)
        reductions = []
        written = False
        for event, received_at in events:
            reduction = apply_event(view, event, received_at)
            reductions.append(reduction)
            if reduction.outcome is not Outcome.DUPLICATE:
                view, written = reduction.view, True
        if not written or view is None:
            return None, reductions
        return view.model_dump_json().encode(), reductions

    return change


@dataclass(frozen=True, slots=True)
class _Queued:
    event: JobEvent
    received_at: str
    done: asyncio.Future[Reduction]


class ViewStore:
    """What microservice-x knows of its jobs, kept under its own app id in one state store."""

    def __init__(
        self,
        clients: ClientKeeper,
        store_name: str,
        view_ttl_seconds: int | None = None,
        index_segment_size: int = SEGMENT_SIZE,
    ) -> None:
        self._records = Records(clients, store_name)
        #: A view expires this long after the last event that changed it (None: never).
        self._view_ttl = view_ttl_seconds
        self._index = JobIndex(self._records, view_ttl_seconds, index_segment_size)
        #: Per job key: events waiting for the next read-fold-write of that key.
        self._queued: dict[str, list[_Queued]] = {}
        self._writers: set[asyncio.Task[None]] = set()
        self._known = KnownViews(view_ttl_seconds)

    async def inspect(self) -> None:
        """Learn what the store's etags are (asked once at start): on state.redis they count
        writes, so the index head needs no read before this process writes it again."""
        try:
            store_type = await self._records.store_type()
        except StoreError as exc:
            logger.warning("the index head is read before each write: %s", exc)
            return
        self._index.counted_etags = store_type == COUNTING_STORE

    async def close(self) -> None:
        if self._writers:
            await asyncio.wait(self._writers)
        await self._index.close()

    async def get_job(self, job_id: str) -> JobView | None:
        key = JOB_KEY_PREFIX + job_id
        data, _ = await self._records.get(key)
        return None if data is None else _decode_view(key, data)

    async def apply(self, event: JobEvent, received_at: str) -> Reduction:
        """Fold an event into its job's stored view (compare-and-swap).

        A job's events come in bursts (created, claimed and completed within milliseconds) and
        are delivered concurrently: each separately would race for the key and pay for the lost
        rounds. Events of one job that arrive while its key is being written wait and are then
        folded together, in arrival order, into one read and one write.
        """
        key = JOB_KEY_PREFIX + event.job.id
        self._known.forget(key)  # written below by compare-and-swap, its etag unknown here
        done: asyncio.Future[Reduction] = asyncio.get_running_loop().create_future()
        queued = self._queued.get(key)
        if queued is not None:
            queued.append(_Queued(event, received_at, done))
        else:
            self._queued[key] = [_Queued(event, received_at, done)]
            # A task, not the caller: a cancelled request must not strand the events queued.
            writer = asyncio.create_task(self._write_queued(key, event.job.id))
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await done

    async def _write_queued(self, key: str, job_id: str) -> None:
        queued = self._queued[key]
        try:
            while queued:
                batch = queued[:]
                queued.clear()
                try:
                    reductions = await self._fold(key, job_id, batch)
                except Exception as exc:
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(exc)
                    continue
                for item, reduction in zip(batch, reductions, strict=True):
                    if not item.done.done():
                        item.done.set_result(reduction)
        finally:
            del self._queued[key]

    async def _fold(self, key: str, job_id: str, batch: list[_Queued]) -> list[Reduction]:
        """One compare-and-swap of the view with every event of ``batch`` applied in order."""
        events = [(item.event, item.received_at) for item in batch]
        first_read = await self._records.get(key)
        if first_read[0] is None:
            # Index first: if the process dies before the view is saved, the redelivery finds the
            # id indexed already; a listed id whose view is missing is simply skipped.
            await self._index.add(job_id)
        return await self._records.update(key, _folding(key, events), first_read, self._view_ttl)

    async def apply_many(self, events: list[tuple[JobEvent, str]]) -> list[Reduction | StoreError]:
        """Fold a bulk delivery's events (with their arrival times) into their views.

        One read of the keys and one write of every changed view, in two calls; a view whose
        write did not go through is then updated alone by compare-and-swap (folding is
        idempotent, so a view that was written after all just sees duplicates). Raises
        StoreError when the read fails; per event, the Reduction or the StoreError of its view.

        Where etags count writes, the read is skipped for the views written here last (their
        etag is known) and for jobs whose first event here is their creation (the view is
        inserted, which fails if one exists): a job's later events cost no read in the common
        case, and a wrong guess falls back as a lost write does.
        """
        by_key: dict[str, list[tuple[JobEvent, str]]] = {}
        for event, received_at in events:
            by_key.setdefault(JOB_KEY_PREFIX + event.job.id, []).append((event, received_at))
        now = time.monotonic()
        reads = self._known_reads(by_key, now)
        unread = [key for key in by_key if key not in reads]
        if unread:
            reads |= await self._records.get_reads(unread)
        new_ids = [group[0][0].job.id for key, group in by_key.items() if reads[key][0] is None]
        # Group-committed into one index write, before any new view (see _fold).
        await asyncio.gather(*(self._index.add(job_id) for job_id in new_ids))
        outcomes: dict[str, list[Reduction] | StoreError] = {}
        writes: dict[str, tuple[bytes, str | None]] = {}
        for key, group in by_key.items():
            try:
                value, reductions = _folding(key, group)(reads[key][0])
            except StoreError as exc:  # a corrupt view fails its own events only
                outcomes[key] = exc
                continue
            outcomes[key] = reductions
            if value is not None:
                writes[key] = (value, reads[key][1])
        if writes and await self._records.save_many(writes, self._view_ttl):
            if self._index.counted_etags:  # see known_views.py
                for key, (value, etag) in writes.items():
                    self._known.wrote(key, value, etag, now)
        elif writes:
            for key in writes:
                self._known.forget(key)  # saved or not: unknown
                try:
                    outcomes[key] = await self._records.update(
                        key, _folding(key, by_key[key]), ttl_seconds=self._view_ttl
                    )
                except StoreError as exc:
                    outcomes[key] = exc
        answers: list[Reduction | StoreError] = []
        positions = dict.fromkeys(by_key, 0)
        for event, _ in events:
            key = JOB_KEY_PREFIX + event.job.id
            outcome = outcomes[key]
            if isinstance(outcome, StoreError):
                answers.append(outcome)
            else:
                answers.append(outcome[positions[key]])
                positions[key] += 1
        return answers

    def _known_reads(
        self, by_key: dict[str, list[tuple[JobEvent, str]]], now: float
    ) -> dict[str, Read]:
        """The views that need no read (see apply_many), as if read."""
        if not self._index.counted_etags:
            return {}
        reads: dict[str, Read] = {}
        for key, group in by_key.items():
            known = self._known.get(key, now)
            if known is not None:
                reads[key] = known
            elif group[0][0].type == CREATED:
                reads[key] = (None, None)
        return reads

    async def list_jobs(
        self, limit: int, status: str | None = None, after: Position | None = None
    ) -> tuple[list[JobView], Position | None]:
        """The newest jobs first, optionally only those in one status, starting after the
        position ``after`` (a cursor); with the position to continue from, None when none follows.

        One call looks at no more than MAX_SCAN indexed jobs, so a page filtered by status may
        hold fewer than ``limit`` jobs and still have a next one. A cursor in a segment that has
        expired is past every job still listed, so its page is empty.
        """
        found: list[JobView] = []
        seen: set[str] = set()
        scanned = 0
        chunk_size = limit if status is None else max(limit, STATUS_CHUNK)
        async with aclosing(self._index.walk(after)) as entries:
            while scanned < MAX_SCAN:
                chunk = await _take(entries, min(chunk_size, MAX_SCAN - scanned))
                if not chunk:
                    return found, None
                scanned += len(chunk)
                keys = [JOB_KEY_PREFIX + job_id for _, job_id in chunk]
                values = await self._records.get_many(keys)
                for place, ((position, job_id), key) in enumerate(zip(chunk, keys, strict=True)):
                    # An id added again after its view expired is listed where it is newest.
                    if key not in values or job_id in seen:
                        continue
                    seen.add(job_id)
                    try:
                        view = _decode_view(key, values[key])
                    except CorruptRecord as exc:
                        # One bad record must not take the listing down for every job;
                        # GET /jobs/{id} names it (500).
                        logger.warning("listing jobs without one: %s", exc)
                        continue
                    if status is not None and view.status != status:
                        continue
                    found.append(view)
                    if len(found) == limit:
                        more = place + 1 < len(chunk) or bool(await _take(entries, 1))
                        return found, position if more else None
            more = bool(await _take(entries, 1))
            return found, chunk[-1][0] if more else None

    async def add_dead_letter(self, entry: DeadLetter) -> bool:
        """Record a dead letter once (by id); False if it was there already."""

        def change(current: bytes | None) -> tuple[bytes | None, bool]:
            entries = decode_list(DEAD_LETTERS_KEY, current)
            if any(isinstance(e, dict) and e.get("id") == entry.id for e in entries):
                return None, False
            entries.append(entry.model_dump(mode="json"))
            return orjson.dumps(entries[-MAX_DEAD_LETTERS:]), True

        return await self._records.update(DEAD_LETTERS_KEY, change)

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest dead letters first."""
        data, _ = await self._records.get(DEAD_LETTERS_KEY)
        entries = decode_list(DEAD_LETTERS_KEY, data)
        try:
            return [DeadLetter.model_validate(e) for e in reversed(entries[-limit:])]
        except ValidationError as exc:
            raise CorruptRecord(f"stored record {DEAD_LETTERS_KEY!r} is corrupt: {exc}") from exc
