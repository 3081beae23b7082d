"""Job persistence through the Dapr SDK: compare-and-swap writes, each one state + event at once.

Every job change is ONE ExecuteStateTransaction on a store with Dapr's transactional outbox, so
the saved job and its CloudEvent never diverge: the stored record, plus an ``outbox.projection``
op (same key) that publishes the public job instead of the record.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from dapr.clients.grpc._request import TransactionalStateOperation
from dapr.clients.grpc._state import Concurrency, StateOptions
from grpc import StatusCode
from grpc.aio import AioRpcError

from dapr_support.batching import Batcher
from dapr_support.clients import ClientKeeper, sidecar_healthy
from dapr_support.etags import COUNTING_STORE, counted_after
from dapr_support.jsonbytes import dumps
from job_orchestrator.at_risk import AtRisk
from job_orchestrator.breaker import Breaker
from job_orchestrator.errors import StoreUnavailable
from job_orchestrator.events import event_payload, outbox_metadata
from job_orchestrator.jobs import Job, valid_job_id
from job_orchestrator.settings import Settings
from job_orchestrator.sidecar_client import connect, grpc_code

logger = logging.getLogger(__name__)

T = TypeVar("T")

ABORTED = StatusCode.ABORTED
#: What the sidecar answers to a request it refuses as such, the store being fine.
REFUSALS = frozenset({StatusCode.RESOURCE_EXHAUSTED, StatusCode.INVALID_ARGUMENT})

#: How many times a compare-and-swap re-reads after losing a race before giving up.
CAS_ATTEMPTS = 8
#: No sidecar call may hang a request or a worker forever.
CALL_TIMEOUT_SECONDS = 10.0
#: Jobs created here whose first version is kept for their claim (a few seconds of submissions).
CREATED_KEPT = 4096
#: Bytes of job records one transaction carries at most (each twice: record and event), well
#: under the 4 MiB a sidecar accepts in one message by default (daprd's --max-body-size).
TRANSACTION_BYTES = 1024 * 1024


def job_key(job_id: str) -> str:
    return f"job-{job_id}"


class Conflict(Exception):
    """A compare-and-swap lost: someone else changed the key since it was read."""


class Write(NamedTuple):
    """One job change: its stored record (as sent) and the transaction operations carrying it."""

    key: str
    etag: str
    record: bytes
    ops: list[TransactionalStateOperation]


class QueryPage(NamedTuple):
    values: list[dict[str, Any]]  #: the rows' values, in the query's order
    token: str  #: where the next page starts ("" when the store says none follows)
    limit: int  #: the page's limit as it ran (see JobStore.query)


class Mutation(NamedTuple):
    current: Job | None  #: the job as last seen (None: it does not exist)
    written: Job | None  #: what was written, None when nothing was
    etag: str  #: the etag after the write when it is predictable, else ""


class JobStore:
    """Reads and writes jobs (and small helper records) in the ``statestore`` component."""

    def __init__(self, client: DaprClient, settings: Settings) -> None:
        self._settings = settings
        self._clients = ClientKeeper(client, self._new_client)
        self._store = settings.state_store
        self._retention = settings.retention_seconds
        #: sidecar calls made, for the per-job call count the benchmark reports
        self.calls = 0
        #: of those, the ones that failed (StoreUnavailable), for the replica's metrics
        self.failed_calls = 0
        #: True when the store's etags are write counters (state.redis: "1", +1 per write), so
        #: the etag after our own write is known without reading it back. A running job's
        #: next write uses it (see Run.trusted); a wrong one costs a failed write and a read.
        self.counted_etags = False
        #: Holds job changes back while the store is down (each would leave an outbox message).
        self.breaker = Breaker()
        #: The finals written here lately, and those a store failure may have cost their
        #: event (reannounce.py announces those again); None when JOB_FINALS_AT_RISK_SECONDS=0.
        self.at_risk = (
            AtRisk(settings.finals_at_risk_seconds) if settings.finals_at_risk_seconds else None
        )
        self.query_api = False
        #: Jobs this process created (state key -> the job and its etag), until their queue
        #: delivery takes one here, a later write here or a change heard from another replica
        #: drops it, or newer ones push it out: the claim then needs no read (see Worker._start).
        self._created: dict[str, tuple[Job, str]] = {}
        #: Reads and job changes that queue up while a call is in flight share the next call.
        self._reads: Batcher[str, tuple[Any, str]] = Batcher(self._read_batch, max_batch=64)
        self._writes: Batcher[Write, None] = Batcher(
            self._write_batch,
            max_batch=32,
            weigh=lambda write: 2 * len(write.record),
            max_weight=TRANSACTION_BYTES,
        )

    @property
    def _client(self) -> DaprClient:
        return self._clients.current

    async def _new_client(self, generation: int) -> DaprClient | None:
        """A client on a fresh channel, if the sidecar answers now (see clients.py)."""
        settings = self._settings
        if not await sidecar_healthy(settings.dapr_http_port, settings.dapr_api_token):
            return None
        return await connect(settings, generation)

    async def close(self) -> None:
        """Finish the calls in flight, then close the clients made after a sidecar restart."""
        await self._reads.close()
        await self._writes.close()
        await self._clients.close()

    def next_etag(self, etag: str) -> str:
        """The etag a key will have after one write over ``etag`` ("" = unknown)."""
        if not self.counted_etags:
            return ""
        return counted_after(etag) or ""

    async def _call(
        self, what: str, call: Callable[[], Awaitable[T]], *, may_conflict: bool = False
    ) -> T:
        """Make one sidecar call; a failure is StoreUnavailable.

        A failure counts as one of ``failed_calls`` here unless ``may_conflict``: a write with
        an etag (or first-write) that loses its race can fail like an outage (state.redis
        reports it as a generic error), so its caller counts it once it has told them apart.
        """
        self.calls += 1
        try:
            answer = await self._answer(what, call)
        except StoreUnavailable as exc:
            if not may_conflict:
                self._failed(exc)
            raise
        self.breaker.answered()
        return answer

    def _failed(self, exc: BaseException | None = None) -> None:
        """A call failed for want of the sidecar or the store (not a lost compare-and-swap),
        or was refused as too large or malformed: that one tells nothing of the store."""
        self.failed_calls += 1
        if exc is not None and grpc_code(exc) in REFUSALS:
            return
        now = time.monotonic()
        self.breaker.failed(now)
        if self.at_risk is not None:
            self.at_risk.failed(now)

    async def _answer(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
                return await call()
        except (DaprGrpcError, AioRpcError) as exc:
            self._clients.failed(exc)
            raise StoreUnavailable(f"{what} failed: {exc.details() or exc.code()}") from exc
        except DaprInternalError as exc:
            # save_state wraps the gRPC error in this one (the code stays in __cause__).
            self._clients.failed(exc)
            raise StoreUnavailable(f"{what} failed: {exc}") from exc
        except TimeoutError as exc:
            raise StoreUnavailable(f"{what}: no answer within {CALL_TIMEOUT_SECONDS:g} s") from exc

    async def get_raw(self, key: str) -> tuple[dict[str, Any] | None, str]:
        """The JSON value at ``key`` and its etag; (None, "") when missing."""
        return await self._within_deadline("reading", self._reads.submit(key, CALL_TIMEOUT_SECONDS))

    async def _within_deadline(self, what: str, queued: Awaitable[T]) -> T:
        """A batched call's result (``queued``: a submit with CALL_TIMEOUT_SECONDS), or
        StoreUnavailable once that passed in all: a request queued behind a call in flight
        would otherwise wait for it and then for its own call, up to twice the 10 s callers
        are told (longer still behind several). One given up while queued is never sent."""
        try:
            return await queued
        except TimeoutError:
            self._failed()
            raise StoreUnavailable(f"{what}: no answer within {CALL_TIMEOUT_SECONDS:g} s") from None

    async def _read_batch(self, keys: list[str]) -> list[tuple[Any, str] | BaseException]:
        """One GetState, or one GetBulkState for several keys."""
        if len(keys) == 1:
            key = keys[0]
            resp = await self._call(
                f"reading {key}", lambda: self._client.get_state(self._store, key)
            )
            return [(json.loads(resp.data), resp.etag) if resp.data else (None, "")]
        wanted = list(dict.fromkeys(keys))
        found = await self._read_bulk(wanted, parallelism=len(wanted))
        return [found.get(key, (None, "")) for key in keys]

    async def _read_bulk(
        self, keys: list[str], parallelism: int
    ) -> dict[str, tuple[Any, str] | BaseException]:
        """Value and etag (or the error) of each key that has one, in one GetBulkState; in
        halves when the answer is more than the sidecar sends in one message (its
        --max-body-size, 4 MiB by default: a few dozen jobs with large results)."""
        try:
            bulk = await self._call(
                f"reading {len(keys)} keys",
                lambda: self._client.get_bulk_state(self._store, keys, parallelism=parallelism),
                may_conflict=True,  # told apart below
            )
        except StoreUnavailable as exc:
            if len(keys) == 1 or grpc_code(exc) is not StatusCode.RESOURCE_EXHAUSTED:
                self._failed(exc)
                raise
            half = len(keys) // 2
            first = await self._read_bulk(keys[:half], parallelism)
            return first | await self._read_bulk(keys[half:], parallelism)
        found: dict[str, tuple[Any, str] | BaseException] = {}
        for item in bulk.items:
            if item.error:
                found[item.key] = StoreUnavailable(f"reading {item.key} failed: {item.error}")
            elif item.data:
                found[item.key] = (json.loads(item.data), item.etag)
        return found

    async def get(self, job_id: str) -> tuple[Job | None, str]:
        """The job and its etag; a deleted job (tombstone) reads as None with the etag.

        An id that can be no key (``||``, too long) names no job: None without asking.
        """
        if not valid_job_id(job_id):
            return None, ""
        data, etag = await self.get_raw(job_key(job_id))
        if data is None or data.get("kind") != "job":
            return None, etag
        return Job.from_record(data), etag

    async def save_raw(
        self,
        key: str,
        value: dict[str, Any],
        *,
        etag: str | None = None,
        ttl_seconds: int | None = None,
        first_write: bool = False,
    ) -> str:
        """Save a helper record; raises Conflict when ``etag`` (or first-write) loses.

        Returns the new etag when predictable (see ``next_etag``), else "".
        """
        self._created.pop(key, None)
        options = StateOptions(concurrency=Concurrency.first_write) if first_write else None
        meta = {"ttlInSeconds": str(ttl_seconds)} if ttl_seconds else {}
        body = dumps(value)
        try:
            await self._call(
                f"saving {key}",
                lambda: self._client.save_state(
                    self._store, key, body, etag=etag, options=options, state_metadata=meta
                ),
                may_conflict=True,
            )
            return self.next_etag(etag or "")
        except StoreUnavailable as exc:
            if grpc_code(exc) == ABORTED:
                raise Conflict(key) from exc
            if etag or first_write:
                # state.redis reports a lost first-write as a generic error, not ABORTED: look.
                current, current_etag = await self.get_raw(key)
                if (first_write and current is not None) or (etag and current_etag != etag):
                    raise Conflict(key) from exc
            self._failed(exc)
            raise

    async def renew_lease(self, job: Job, etag: str) -> str:
        """Extend a lease without publishing: a lease is not a change clients care about."""
        return await self.save_raw(job_key(job.id), job.to_record(), etag=etag)

    async def write(self, job: Job, etag: str) -> str:
        """Save ``job`` and publish its event in one transaction; Conflict if ``etag`` is stale.

        ``etag`` "" means create. Final jobs get the retention TTL. Returns the new etag when
        predictable, else "".
        """
        now = time.monotonic()
        if not self.breaker.allows(now):
            since = self.breaker.failing_since or now
            raise StoreUnavailable(
                f"saving a job: not tried, the state store has failed every call for "
                f"{now - since:.1f} s (a change is let through every "
                f"{self.breaker.trial_every:g} s to see whether it is back)"
            )
        key = job_key(job.id)
        event_meta = outbox_metadata(job)
        stored_meta = dict(event_meta)
        if job.is_final:
            stored_meta["ttlInSeconds"] = str(self._retention)
        public = job.public()
        record = dumps(job.to_record(public))
        # The projection first: daprd 1.18's outbox takes projections out of the operations
        # while ranging over them, so a record ahead of its projection makes a transaction of
        # several jobs panic daprd (slice bounds out of range); this order it reads right.
        ops = [
            TransactionalStateOperation(
                key=key,
                data=event_payload(public, self._settings.replica_name),
                metadata={**event_meta, "outbox.projection": "true"},
            ),
            TransactionalStateOperation(
                key=key, data=record, etag=etag or None, metadata=stored_meta
            ),
        ]
        new_etag = self.next_etag(etag)
        # Before the call: once it commits, the job's delivery may come before its answer.
        self._remember(key, job if not etag else None, new_etag)
        try:
            await self._within_deadline(
                "saving a job",
                self._writes.submit(Write(key, etag, record, ops), CALL_TIMEOUT_SECONDS),
            )
        except BaseException as exc:
            self._created.pop(key, None)
            if job.is_final and isinstance(exc, StoreUnavailable) and self.at_risk is not None:
                self.at_risk.unsure(job.id)  # it may have committed, its event unrelayed
            raise
        if job.is_final and self.at_risk is not None:
            self.at_risk.wrote(job.id, time.monotonic())
        return new_etag

    def _remember(self, key: str, created: Job | None, etag: str) -> None:
        self._created.pop(key, None)
        if created is None or not etag or not self._settings.runs_worker:
            return
        if len(self._created) >= CREATED_KEPT:
            del self._created[next(iter(self._created))]
        self._created[key] = (created, etag)

    def take_created(self, job_id: str) -> tuple[Job, str] | None:
        """The job as this process created it and its etag, once, if nothing since changed it
        here or was heard of (``forget``); None otherwise. If stale, a write with it loses."""
        return self._created.pop(job_key(job_id), None)

    def forget(self, job_id: str) -> None:
        """Another replica changed the job: what ``take_created`` knows of it is stale."""
        self._created.pop(job_key(job_id), None)

    async def _write_batch(self, writes: list[Write]) -> list[None | BaseException]:
        """The ``writes`` in as few transactions as may be: one per round of distinct keys.

        Two changes of one job never share a transaction: the outbox matches each record to
        its event by key (daprd's too), so both events would carry the last one's job, and on
        state.redis the first could stand while the second lost its etag check.
        """
        outcomes: list[None | BaseException] = [None] * len(writes)
        for batch in distinct_rounds([w.key for w in writes]):
            answered = await self._write_round([writes[i] for i in batch])
            for index, outcome in zip(batch, answered, strict=True):
                outcomes[index] = outcome
        return outcomes

    async def _write_round(self, writes: list[Write]) -> list[None | BaseException]:
        """One transaction for all ``writes`` (distinct keys); if it fails, find out which of
        them stand.

        On state.redis an etag failure fails only its own operation (the others are stored,
        and the sidecar's outbox announces exactly those); the atomic stores store none. So
        read the keys back: a write whose record is there stands (a creation, whose id is new,
        stands when any record is there: another replica may have claimed the job since), the
        others are tried alone, where a lost etag check is told from an outage as for any
        single write.
        """
        if len(writes) == 1:
            return [await _outcome(self._transact(writes[0]))]
        ops = [op for write in writes for op in write.ops]
        try:
            # Not counted as failed: settling reads and retries, and an outage fails those too.
            await self._call(
                f"saving {len(writes)} jobs",
                lambda: self._client.execute_state_transaction(self._store, ops),
                may_conflict=True,
            )
            return [None] * len(writes)
        except StoreUnavailable:
            logger.debug("a transaction of %s job changes failed; settling each", len(writes))
        try:
            stored = await self.bulk_get(list(dict.fromkeys(w.key for w in writes)))
        except StoreUnavailable as exc:
            return [exc] * len(writes)
        settled = (_done() if stood(w, stored) else self._retry(w) for w in writes)
        return list(await asyncio.gather(*settled))

    async def _retry(self, write: Write) -> None | BaseException:
        return await _outcome(self._transact(write))

    async def bury(self, job_id: str, etag: str, now: float) -> None:
        """Delete a job by leaving a tombstone (Conflict if ``etag`` is stale).

        A real delete would let a late compare-and-swap with a remembered etag bring the job
        back: state stores accept a write with an etag on a missing key. A tombstone has a
        version, so such writes lose. It expires with the job retention.
        """
        tombstone = {"kind": "tombstone", "id": job_id, "deletedAt": now}
        await self.save_raw(job_key(job_id), tombstone, etag=etag, ttl_seconds=self._retention)

    async def _transact(self, write: Write) -> None:
        key, etag = write.key, write.etag
        try:
            await self._call(
                f"saving {key}",
                lambda: self._client.execute_state_transaction(self._store, write.ops),
                may_conflict=True,
            )
        except StoreUnavailable as exc:
            # A stale etag inside a transaction surfaces as a generic transaction error (daprd
            # maps it to INTERNAL), so re-read: a changed etag means we lost the race.
            if etag:
                _, current = await self.get_raw(key)
                if current != etag:
                    raise Conflict(key) from None
            self._failed(exc)
            raise

    async def mutate(
        self,
        job_id: str,
        change: Callable[[Job], Job | None],
        *,
        known: tuple[Job, str] | None = None,
    ) -> Mutation:
        """Apply ``change`` with compare-and-swap, re-reading after a lost race.

        ``change`` returns the new job, or None to leave it as it is. ``known`` is a version
        already at hand (it saves the first read; if stale, the write loses and we re-read).
        """
        for _ in range(CAS_ATTEMPTS):
            job, etag = known if known is not None and known[1] else await self.get(job_id)
            known = None
            if job is None:
                return Mutation(None, None, "")
            new = change(job)
            if new is None:
                return Mutation(job, None, etag)
            try:
                new_etag = await self.write(new, etag)
            except Conflict:
                logger.debug("job %s changed under us; re-reading", job_id)
                continue
            return Mutation(new, new, new_etag)
        raise StoreUnavailable(f"job {job_id} kept changing; gave up after {CAS_ATTEMPTS} tries")

    async def inspect(self) -> None:
        """Learn what the state store component can do (asked once at start)."""
        meta = await self._call("reading sidecar metadata", self._client.get_metadata)
        for comp in meta.registered_components:
            if comp.name == self._store:
                self.query_api = "QUERY_API" in comp.capabilities
                self.counted_etags = comp.type == COUNTING_STORE

    async def query(self, query: dict[str, Any]) -> QueryPage:
        """Run a state query for one page (``query["page"]["limit"]`` rows at most): with half
        the rows at a time while their values are more than the sidecar sends in one message
        (its --max-body-size, 4 MiB by default: 100 jobs with inputs near MAX_INPUT_BYTES, or
        a dozen with results near MAX_RESULT_BYTES). The page is then shorter; its token goes
        on from where it ends."""
        page = dict(query["page"])
        while True:
            body = json.dumps({**query, "page": page})
            try:
                resp = await self._call(
                    "querying jobs", functools.partial(self._client.query_state, self._store, body)
                )
            except StoreUnavailable as exc:
                if page["limit"] <= 1 or grpc_code(exc) is not StatusCode.RESOURCE_EXHAUSTED:
                    raise
                page["limit"] //= 2
                continue
            values = [json.loads(item.value) for item in resp.results if item.value]
            return QueryPage(values, resp.token or "", page["limit"])

    async def bulk_get(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The values of the keys that have one (a key the store failed to read is left out)."""
        if not keys:
            return {}
        found = await self._read_bulk(keys, parallelism=1)
        return {key: read[0] for key, read in found.items() if not isinstance(read, BaseException)}


def distinct_rounds(keys: list[str]) -> list[list[int]]:
    """Indexes of ``keys`` in rounds, in order, no key twice in a round: the n-th write of a
    key goes in round n."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(index)
    return rounds


def stood(write: Write, stored: dict[str, dict[str, Any]]) -> bool:
    """Whether ``write`` is applied, judged by its key's record as read back after the batch."""
    if write.key not in stored:
        return False
    return not write.etag or stored[write.key] == json.loads(write.record)


async def _outcome(call: Awaitable[None]) -> None | BaseException:
    """What a write ended in, as a value: None when it stands, else its error."""
    try:
        await call
    except (StoreUnavailable, Conflict) as exc:
        return exc
    return None


async def _done() -> None:
    return None
