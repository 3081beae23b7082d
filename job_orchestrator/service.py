"""What the HTTP API does with jobs: submit, read, wait, cancel, delete, list.

No web framework here: routes translate HTTP to these calls, errors come back as the hierarchy in
errors.py. Waits are event-driven (waiters.py) with one state read at the deadline as a fallback.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from dapr_support.tracecontext import new_traceparent
from job_orchestrator import jobs
from job_orchestrator.auth import owns
from job_orchestrator.errors import JobConflict, JobNotFound, ResultGone, StoreUnavailable
from job_orchestrator.handlers import HandlerRegistry
from job_orchestrator.idempotency import claim_key
from job_orchestrator.index import JobIndex
from job_orchestrator.jobs import Job, JobStatus
from job_orchestrator.limits import WaiterSlots, check_input_size
from job_orchestrator.listing import Page, QueryListing
from job_orchestrator.metrics import JobMetrics
from job_orchestrator.requeue import Requeue
from job_orchestrator.settings import Settings
from job_orchestrator.store import Conflict, JobStore, job_key
from job_orchestrator.waiters import ClientGone, Waiters, Watch, is_final
from job_orchestrator.worker import Worker


@dataclass(frozen=True, slots=True)
class Submission:
    type: str
    input: dict[str, Any]
    owner: str | None
    max_attempts: int | None
    run_timeout_seconds: float | None

    def fingerprint_fields(self, job_input: dict[str, Any], max_attempts: int) -> dict[str, Any]:
        """The job this submission makes, as the Idempotency-Key compares it: the input as the
        handler reads it and the attempts as resolved, so `1` and `1.0`, or a default left out
        and spelled out, are the same request."""
        return {**dataclasses.asdict(self), "input": job_input, "max_attempts": max_attempts}

    def unversioned_fingerprint_fields(self) -> list[dict[str, Any]]:
        """The request as the first releases compared it, before fingerprints had a version:
        its fields as sent. (Later unversioned records are in :meth:`fingerprint_fields`'s
        format, which ``claim_key`` tries first.)"""
        return [dataclasses.asdict(self)]


@dataclass(frozen=True, slots=True)
class Outcome:
    job: dict[str, Any]
    replayed: bool = False  #: an Idempotency-Key gave back an earlier job


class JobService:
    def __init__(
        self,
        store: JobStore,
        registry: HandlerRegistry,
        waiters: Waiters,
        worker: Worker | None,
        listing: QueryListing | JobIndex,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        metrics: JobMetrics | None = None,
        requeue: Requeue | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.waiters = waiters
        self.worker = worker
        self.listing = listing
        self.settings = settings
        self.waiter_slots = WaiterSlots(settings.max_waiters)
        self._clock = clock
        self._metrics = metrics or JobMetrics()
        #: Told of every job created here, to announce again one that nobody takes up.
        self.requeue = requeue

    def _slot(self, wait: float) -> AbstractContextManager[None]:
        """A waiter slot when the request will wait; raises TooManyWaiters when none is free."""
        return self.waiter_slots.hold() if wait > 0 else nullcontext()

    def wait_budget(self, requested: float | None) -> float:
        """Seconds a request may wait: its own choice (or the default), capped by configuration."""
        wanted = self.settings.default_wait_seconds if requested is None else requested
        return max(0.0, min(wanted, self.settings.max_wait_seconds))

    async def submit(
        self,
        sub: Submission,
        *,
        wait: float,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        gone: ClientGone | None = None,
    ) -> Outcome:
        """Create the job (one transactional-outbox call) and wait up to ``wait`` s for it.

        ``traceparent``: the caller's trace, which the job's events continue (a new trace when
        None); not part of the Idempotency-Key fingerprint, since a retry is a new request.
        ``gone``: returns when the caller disconnected; that ends the wait, never the job.
        """
        check_input_size(sub.input, self.settings.max_input_bytes)
        # The slot is taken before anything is written (key claim, job): a 503 leaves no trace.
        with self._slot(wait):
            return await self._submit(
                sub, wait, idempotency_key, traceparent or new_traceparent(), gone
            )

    async def _submit(
        self,
        sub: Submission,
        wait: float,
        idempotency_key: str | None,
        traceparent: str,
        gone: ClientGone | None,
    ) -> Outcome:
        job_input = self.registry.validate_input(sub.type, sub.input)
        max_attempts = sub.max_attempts or self.settings.default_max_attempts
        now = self._clock()
        job_id, fresh = str(uuid.uuid4()), True
        if idempotency_key is not None:
            claim = await claim_key(
                self.store,
                idempotency_key,
                sub.fingerprint_fields(job_input, max_attempts),
                now=now,
                retention_seconds=self.settings.idempotency_retention_seconds,
                unversioned=sub.unversioned_fingerprint_fields(),
            )
            job_id, fresh = claim.job_id, claim.fresh
        with self.waiters.watch(job_id) as watch:
            if fresh:
                index = self.listing if isinstance(self.listing, JobIndex) else None
                job = jobs.new_job(
                    job_id,
                    sub.type,
                    job_input,
                    owner=sub.owner,
                    max_attempts=max_attempts,
                    run_timeout_seconds=sub.run_timeout_seconds,
                    now=now,
                    indexed_as=index.reserve() if index is not None else None,
                    created_by=self.requeue.instance if self.requeue is not None else None,
                    traceparent=traceparent,
                )
                if self.requeue is not None:
                    # Before the write: once it commits, the job's delivery may come before its
                    # answer. A write that failed leaves it too: a look finds nothing, or the
                    # job, should the write have been applied after all.
                    self.requeue.created(job_id)
                try:
                    await self.store.write(job, "")
                finally:
                    if index is not None:
                        index.add(job)
                self._metrics.submitted(job)
                current = job.public()
            else:
                current = await self.get(job_id)
            if not is_final(current) and wait > 0:
                watch.offer(current)
                current = await self._await_final(watch, wait, gone)
        return Outcome(current, replayed=not fresh)

    async def _await_final(
        self, watch: Watch, wait: float, gone: ClientGone | None
    ) -> dict[str, Any]:
        final = await watch.final(wait, gone)
        if final is not None:
            return dict(final)
        if watch.released and watch.latest is not None:
            # Shutting down: answer now with what we know (202 + Location to poll elsewhere);
            # the sidecar may be stopping too, so no read. (Or the client left: nobody to tell.)
            return dict(watch.latest)
        # The one state read of a wait: a notification may have been lost (e.g. a broadcast
        # delivery still in flight), so look at the record once at the deadline.
        return await self.get(watch.job_id)

    async def get(self, job_id: str, caller: str | None = None) -> dict[str, Any]:
        """The public job; another owner's job is as unknown as a missing one (404)."""
        job, _ = await self.store.get(job_id)
        if job is None or not owns(job.owner, caller):
            raise JobNotFound(job_id)
        return job.public()

    async def get_waiting(
        self,
        job_id: str,
        wait: float,
        caller: str | None = None,
        gone: ClientGone | None = None,
    ) -> dict[str, Any]:
        """The job, long-polling up to ``wait`` s for it to become final (or until ``gone``)."""
        with self.waiters.watch(job_id) as watch:
            current = await self.get(job_id, caller)
            if is_final(current) or wait <= 0:
                return current
            with self.waiter_slots.hold():
                watch.offer(current)
                return await self._await_final(watch, wait, gone)

    async def result(self, job_id: str, caller: str | None = None) -> Any:
        job, _ = await self.store.get(job_id)
        if job is None or not owns(job.owner, caller):
            raise JobNotFound(job_id)
        self._require_result(job)
        return job.result

    def _require_result(self, job: Job) -> None:
        if job.status is not JobStatus.COMPLETED:
            why = f": {job.error}" if job.error else ""
            raise JobConflict(f"job {job.id} is {job.status.value}, it has no result{why}")
        if job.result_dropped:
            raise ResultGone(f"the result of job {job.id} was deleted")

    async def drop_result(self, job_id: str, caller: str | None = None) -> None:
        """Forget a completed job's result, keep the record (no event: the job did not change)."""
        for _ in range(8):
            job, etag = await self.store.get(job_id)
            if job is None or not owns(job.owner, caller):
                raise JobNotFound(job_id)
            if job.result_dropped:
                return
            self._require_result(job)
            dropped = dataclasses.replace(job, result=None, result_dropped=True)
            left = self.settings.retention_seconds - int(self._clock() - (job.completed_at or 0))
            try:
                await self.store.save_raw(
                    job_key(job_id), dropped.to_record(), etag=etag, ttl_seconds=max(1, left)
                )
                return
            except Conflict:
                continue
        raise JobConflict(f"job {job_id} kept changing; try again")

    async def cancel(
        self,
        job_id: str,
        wait: float,
        caller: str | None = None,
        gone: ClientGone | None = None,
    ) -> dict[str, Any]:
        """New: Canceled at once. InProgress: ask its worker to stop and wait for the outcome
        (until ``gone``, if the caller leaves first: the cancel request stays)."""
        with self.waiters.watch(job_id) as watch:
            now = self._clock()
            before, written, _ = await self.store.mutate(
                job_id, lambda j: _cancel_step(j, now) if owns(j.owner, caller) else None
            )
            if before is None or not owns(before.owner, caller):
                raise JobNotFound(job_id)
            if written is None:
                if before.is_final:
                    raise JobConflict(f"job {job_id} is already {before.status.value}")
                written = before
            self.waiters.notify(written.public())
            if written.is_final:
                self._metrics.finished(written)
                return written.public()
            if self.worker is not None:
                self.worker.cancel_local(job_id)
            if self.waiter_slots.full:
                # The cancel request is written; with no slot to wait in, answer 202 at once.
                return written.public()
            with self.waiter_slots.hold():
                watch.offer(written.public())
                current = await self._await_final(watch, wait, gone)
        if is_final(current) and current["status"] != JobStatus.CANCELED.value:
            raise JobConflict(f"job {job_id} became {current['status']} before it was canceled")
        return current

    async def delete(self, job_id: str, caller: str | None = None) -> None:
        """Cancel if needed, then remove the record (the cancel is published first)."""
        for _ in range(8):
            job, etag = await self.store.get(job_id)
            if job is None or not owns(job.owner, caller):
                raise JobNotFound(job_id)
            if not job.is_final:
                known = (job, etag)
                _, canceled, _ = await self.store.mutate(job_id, self._cancel_now, known=known)
                if canceled is not None:
                    self._metrics.finished(canceled)
                    self.waiters.notify(canceled.public())
                if self.worker is not None:
                    self.worker.cancel_local(job_id)
                continue
            try:
                await self.store.bury(job_id, etag, self._clock())
                return
            except Conflict:
                continue
        raise JobConflict(f"job {job_id} kept changing; try again")

    def _cancel_now(self, job: Job) -> Job | None:
        return None if job.is_final else jobs.transition(job, JobStatus.CANCELED, self._clock())

    async def list(
        self, owner: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page:
        if isinstance(self.listing, QueryListing):
            return await self.listing.page(owner, status, limit, cursor)
        return await self.listing.page(owner, status, limit, cursor, self._clock())

    async def changes(
        self, job_id: str, refresh: float, caller: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every version of the job from now until it is final (for Server-Sent Events)."""
        with self.waiter_slots.hold(), self.waiters.watch(job_id) as watch:
            current = await self.get(job_id, caller)
            yield current
            last = int(current["sequence"])
            while not is_final(current):
                if not await watch.changed(refresh):
                    if watch.released:
                        return  # shutting down; the client reconnects to another replica
                    running_here = self.worker is not None and self.worker.runs(job_id)
                    if not running_here and self.waiters.refresh_due(job_id, refresh):
                        # Progress made on another replica is not broadcast; re-read at the
                        # refresh interval while a stream is open, once for all of the job's
                        # streams here. Deleted or unreadable: end the stream (the client may
                        # reconnect).
                        try:
                            self.waiters.notify(await self.get(job_id))
                        except (JobNotFound, StoreUnavailable):
                            return
                if watch.latest is not None and int(watch.latest["sequence"]) > last:
                    current = watch.latest
                    last = int(current["sequence"])
                    yield current


def _cancel_step(job: Job, now: float) -> Job | None:
    if job.is_final or job.cancel_requested:
        return None
    if job.status is JobStatus.NEW:
        return jobs.transition(job, JobStatus.CANCELED, now)
    return jobs.update(job, now, cancel_requested=True)
