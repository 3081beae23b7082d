"""Runs queued jobs: claim with compare-and-swap, keep the lease, retry, time out, cancel, finish.

The queue delivery that brought a job is held open until the job is final, so a replica that
dies leaves its message pending and the broker hands it to another replica (components/jobqueue).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from grpc import StatusCode

from job_orchestrator import jobs
from job_orchestrator.errors import StoreUnavailable
from job_orchestrator.handlers import HandlerRegistry
from job_orchestrator.jobs import Delivery, Job, JobStatus
from job_orchestrator.metrics import JobMetrics
from job_orchestrator.runs import Answer, LostJob, Outcome, Run
from job_orchestrator.settings import Settings
from job_orchestrator.sidecar_client import grpc_code
from job_orchestrator.store import Conflict, JobStore
from job_orchestrator.threads import HandlerThreads
from job_orchestrator.waiters import Waiters

logger = logging.getLogger(__name__)

#: Claims re-read this often after losing a race before leaving the job to a redelivery.
CLAIM_TRIES = 4
#: How long a stopping replica tries to hand a running job back.
HAND_BACK_SECONDS = 2.0
#: Seconds between tries of a running job's write that the store did not take.
STORE_RETRY_SECONDS = 1.0
#: Errors a write does not get past by being sent again.
_LASTING = frozenset({StatusCode.RESOURCE_EXHAUSTED, StatusCode.INVALID_ARGUMENT})


class Worker:
    def __init__(
        self,
        store: JobStore,
        registry: HandlerRegistry,
        waiters: Waiters,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        on_delivered: Callable[[Job], None] | None = None,
        metrics: JobMetrics | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._waiters = waiters
        self._settings = settings
        self._me = settings.replica_name
        self._clock = clock
        #: Told of every job a queue delivery brought here, claimed or already settled (the
        #: listing index checks that its creator indexed it).
        self._on_delivered = on_delivered
        self._metrics = metrics or JobMetrics()
        self._runs: dict[str, Run] = {}
        #: Where plain-function handlers run: the loop's default executor has only
        #: min(32, cores + 4) threads, 6 on two cores, so further jobs waited, shown running.
        self._threads = HandlerThreads(settings.job_threads)
        #: Set once the replica begins to stop: no new claims; runs cancelled now are handed back.
        self._stopping = False
        self._grace: asyncio.Task[None] | None = None  #: waits out the grace, then closes
        self._closing: asyncio.Task[None] | None = None
        self._rechecks: set[asyncio.Task[None]] = set()  #: reads after broadcasts, in flight

    @property
    def running(self) -> int:
        return len(self._runs)

    def runs(self, job_id: str) -> bool:
        return job_id in self._runs

    def described(self) -> list[str]:
        """The jobs running here, as ``type id``."""
        return [f"{run.job.type} {job_id}" for job_id, run in self._runs.items()]

    async def deliver(self, job_id: str) -> Answer:
        """A queue delivery (job.created, or a job handed back): run the job, or decide it
        needs nothing.

        The delivery that starts a run is held until the job is final. Another delivery of a
        job running here (the broker hands a message pending past ``processingTimeout`` out
        again, as a long job's is, every ``processingTimeout``) answers RETRY at once, as one
        for a job running on another replica does: held as well, each would keep one more of
        the sidecar's ``concurrency`` slots until the job ends, until long jobs crowd every
        other job out of the replica.
        """
        if job_id in self._runs:
            logger.info("job %s runs here already; leaving the redelivery pending", job_id)
            return Answer.RETRY
        if self._stopping:
            return Answer.RETRY  # a stopping replica claims nothing new
        run = await self._start(job_id)
        if isinstance(run, Answer):
            return run
        assert run.task is not None
        try:
            # shield: the sidecar dropping this request must not stop the job.
            return await asyncio.shield(run.task)
        except asyncio.CancelledError:
            if self._stopping and run.task.cancelled():
                return Answer.RETRY  # stopped before it began: nothing to hand back
            raise

    async def _start(self, job_id: str) -> Run | Answer:
        # A job change is written with an etag known to be current: on state.redis a
        # transaction that loses its etag check is not rolled back as a whole, so under daprd
        # the outbox may still publish its event (this project's sidecar never does). The
        # claim reads first. A run's later changes use the etag of its own last write while
        # its lease is safe and no other replica's change reached it (Run.trusted): the only
        # other writers of a leased job are cancel requests and deletes, which every replica
        # hears by broadcast, so the window for a stray event is that broadcast's latency, the
        # same order as the gap between a read and the write it precedes. A job created by
        # this replica is claimed with the etag of its creation, unread, on the same terms:
        # a later change here or a final event heard from another replica drops it.
        known = self._store.take_created(job_id)
        for _ in range(CLAIM_TRIES):
            job, etag = known if known is not None else await self._store.get(job_id)
            known = None
            decision = self._decide(job)
            if job is None:
                return Answer.SUCCESS
            if decision is Delivery.DONE:
                self._delivered(job)
                return Answer.SUCCESS
            if decision is Delivery.BUSY:
                logger.info(
                    "job %s is held by %s; leaving the delivery pending", job_id, job.worker
                )
                return Answer.RETRY
            if decision in (Delivery.CANCEL, Delivery.GIVE_UP):
                status, fields = JobStatus.CANCELED, {}
                if decision is Delivery.GIVE_UP:
                    error = f"its worker was lost {job.takeovers + 1} times; giving up"
                    status, fields = JobStatus.FAILED, {"error": error}
                await self._finish(
                    job_id,
                    status,
                    fields,
                    known=(job, etag),
                    guard=functools.partial(self._still, decision),
                )
                self._delivered(job)
                return Answer.SUCCESS
            claimed = jobs.claim(job, self._me, self._clock(), self._settings.lease_seconds)
            try:
                new_etag = await self._store.write(claimed, etag)
            except Conflict:
                continue
            self._metrics.claimed(job, claimed)
            return self._launch(claimed, new_etag)
        return Answer.RETRY

    def _launch(self, claimed: Job, etag: str) -> Run:
        logger.info("job %s claimed by %s (attempt %s)", claimed.id, self._me, claimed.attempt)
        self._waiters.notify(claimed.public())
        self._delivered(claimed)
        job_id = claimed.id
        run = Run(claimed, etag, asyncio.get_running_loop())
        run.task = asyncio.create_task(self._supervise(run), name=f"job-{job_id}")
        self._runs[job_id] = run
        return run

    def _delivered(self, job: Job) -> None:
        if self._on_delivered is not None:
            self._on_delivered(job)

    def _still(self, decision: Delivery, job: Job) -> bool:
        return self._decide(job) is decision

    def _decide(self, job: Job | None) -> Delivery:
        return jobs.decide_delivery(job, self._clock(), self._settings.max_takeovers)

    def cancel_local(self, job_id: str) -> bool:
        """Ask a job running here to stop; its handler sees ``ctx.cancelled``."""
        run = self._runs.get(job_id)
        if run is None:
            return False
        run.cancel()
        return True

    def recheck(self, job_id: str) -> None:
        """Another replica announced that a job was canceled or finished: if it runs here,
        read the job, and stop its handler if the store says so. The announcement itself is
        not trusted, since any app allowed to publish on the topic could send one."""
        self._store.forget(job_id)
        run = self._runs.get(job_id)
        if run is None:
            return
        run.distrust()
        task = asyncio.create_task(self._recheck(run), name=f"recheck-{job_id}")
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    async def _recheck(self, run: Run) -> None:
        try:
            job, _ = await self._store.get(run.job.id)
        except StoreUnavailable as exc:  # the lease renewal reads it again soon
            logger.warning("job %s: could not re-read it after a broadcast: %s", run.job.id, exc)
            return
        if job is None or job.cancel_requested or not self._mine(job, run.job.attempt):
            run.cancel()

    async def _supervise(self, run: Run) -> Answer:
        try:
            await self._attempts(run)
        except LostJob:
            logger.info("job %s was lost by %s; stopped its handler", run.job.id, self._me)
        except StoreUnavailable as exc:
            # The lease runs out and the broker redelivers the job to someone else.
            logger.warning(
                "job %s: store unavailable (%s); leaving it to the lease", run.job.id, exc
            )
            return Answer.RETRY
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cancelled by close(): hand the job back; the delivery stays pending at the broker.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            await self._hand_back(run)
            return Answer.RETRY
        finally:
            self._runs.pop(run.job.id, None)
        return Answer.SUCCESS

    async def _attempts(self, run: Run) -> None:
        while True:
            if run.ctx.cancelled:
                await self._end(run, JobStatus.CANCELED, {})
                return
            outcome, value = await self._attempt(run)
            if outcome is Outcome.DONE:
                await self._complete(run, value)
                return
            if outcome is Outcome.CANCELED:
                await self._end(run, JobStatus.CANCELED, {})
                return
            if outcome is Outcome.TIMED_OUT:
                await self._end(run, JobStatus.FAILED, {"error": value})
                return
            failures = run.job.failures + 1
            if failures >= run.job.max_attempts:
                await self._end(run, JobStatus.FAILED, {"error": value, "failures": failures})
                return
            await self._persist(run, functools.partial(self._record_failure, run, failures, value))
            await self._back_off(run, failures)

    async def _end(self, run: Run, status: JobStatus, fields: dict[str, Any]) -> None:
        """Write a final status, with the progress last reported (COMPLETED brings its own)."""
        if status is not JobStatus.COMPLETED:
            fields = {**run.reported_fields(), **fields}
        await self._persist(run, functools.partial(self._finish, run.job.id, status, fields))

    async def _persist(self, run: Run, write: Callable[[], Awaitable[None]]) -> None:
        """Make ``write``, a change to a job running here, trying again while the store does
        not take it and the lease still holds: a short outage of the store must neither stop
        a handler nor lose how a job ended (taken over after its lease, it would run again).
        StoreUnavailable once the lease is near its end, as another replica may then take the
        job over, or at once for an error that sending again does not mend."""
        margin = self._settings.lease_seconds / 10
        while True:
            try:
                await write()
                return
            except StoreUnavailable as exc:
                lease = run.job.lease_expires_at
                left = (lease if lease is not None else 0.0) - self._clock() - margin
                if left <= 0 or grpc_code(exc) in _LASTING:
                    raise
                logger.warning(
                    "job %s: %s; trying again, its lease holds for %.0f s more",
                    run.job.id,
                    exc,
                    left,
                )
                await asyncio.sleep(min(STORE_RETRY_SECONDS, left))

    async def _complete(self, run: Run, result: Any) -> None:
        """Write the job Completed. If the sidecar refuses that write as too large (results
        allowed past what it accepts: MAX_RESULT_BYTES against its --max-body-size), fail the
        job saying so: left running, it would be taken over and run again, to the same end."""
        try:
            await self._end(run, JobStatus.COMPLETED, run.done_fields(result))
        except StoreUnavailable as exc:
            if grpc_code(exc) is not StatusCode.RESOURCE_EXHAUSTED:
                raise
            fields = {
                "error": f"the sidecar refused the completed job as too large ({exc}); "
                "MAX_RESULT_BYTES must stay below what the sidecar accepts"
            }
            await self._end(run, JobStatus.FAILED, fields)

    async def _attempt(self, run: Run) -> tuple[Outcome, Any]:
        """Run the handler once, publishing progress and renewing the lease while it works."""
        handler = asyncio.create_task(self._registry.run(run.job.type, run.ctx, self._threads))
        timeout = run.job.run_timeout_seconds
        deadline = time.monotonic() + timeout if timeout else None
        renew_every = self._settings.lease_seconds / 3
        last_write = time.monotonic()
        try:
            while not handler.done():
                if run.ctx.cancelled:
                    return Outcome.CANCELED, None
                now = time.monotonic()
                waits = [last_write + renew_every - now]
                if deadline is not None:
                    waits.append(deadline - now)
                if run.progress is not None:
                    waits.append(last_write + self._settings.progress_interval_seconds - now)
                run.wake.clear()
                wake = asyncio.ensure_future(run.wake.wait())
                await asyncio.wait(
                    {handler, wake},
                    timeout=max(0.0, min(waits)),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                wake.cancel()
                if handler.done() or run.ctx.cancelled:
                    continue
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return Outcome.TIMED_OUT, f"timed out after {timeout:g} s (runTimeoutSeconds)"
                if run.progress is not None and (
                    now - last_write >= self._settings.progress_interval_seconds
                ):
                    await self._persist(run, functools.partial(self._write_progress, run))
                    last_write = time.monotonic()
                elif now - last_write >= renew_every:
                    await self._persist(run, functools.partial(self._renew, run))
                    last_write = time.monotonic()
        finally:
            if not handler.done():
                handler.cancel()
        return run.outcome(handler, self._settings.max_result_bytes)

    def _mine(self, job: Job, attempt: int) -> bool:
        return not job.is_final and job.worker == self._me and job.attempt == attempt

    async def _write_progress(self, run: Run) -> None:
        assert run.progress is not None
        percent, message = run.progress
        run.progress = None
        lease_until = self._clock() + self._settings.lease_seconds
        try:
            await self._change(
                run,
                lambda j: jobs.update(
                    j,
                    self._clock(),
                    progress_percent=percent,
                    progress_message=message,
                    lease_expires_at=lease_until,
                ),
            )
        except StoreUnavailable:
            if run.progress is None:  # nothing newer came meanwhile: keep it for the next try
                run.progress = (percent, message)
            raise

    async def _renew(self, run: Run) -> None:
        """Extend the lease (no event); notice a cancel request or a lost job on the way."""
        known = run.known
        for _ in range(CLAIM_TRIES):
            job, etag = known if known is not None else await self._store.get(run.job.id)
            known = None
            self._check(run, job)
            assert job is not None
            renewed = jobs.renew(job, self._clock() + self._settings.lease_seconds)
            try:
                run.etag = await self._store.renew_lease(renewed, etag)
            except Conflict:
                continue
            run.job = renewed
            return

    def _check(self, run: Run, job: Job | None) -> None:
        if job is None or not self._mine(job, run.job.attempt):
            run.cancel()
            raise LostJob(run.job.id)
        if job.cancel_requested:
            run.cancel()

    async def _change(self, run: Run, change: Callable[[Job], Job]) -> None:
        """CAS-write a change to a job we run; LostJob if it is no longer ours."""

        def guarded(job: Job) -> Job | None:
            return change(job) if self._mine(job, run.job.attempt) else None

        trusted = run.trusted(self._clock(), self._settings.lease_seconds / 3)
        current, written, etag = await self._store.mutate(run.job.id, guarded, known=trusted)
        if written is None:
            run.etag = ""
            self._check(run, current)
            return
        run.job, run.etag = written, etag
        self._waiters.notify(written.public())
        if written.cancel_requested:
            run.cancel()

    def _retry_delay(self, failures: int) -> float:
        settings = self._settings
        return jobs.retry_delay(
            failures, settings.retry_backoff_seconds, settings.retry_backoff_max_seconds
        )

    async def _record_failure(self, run: Run, failures: int, error: str) -> None:
        """Write a failed attempt and the next one's number; the lease covers the backoff."""
        delay = self._retry_delay(failures)
        logger.info(
            "job %s failed (%s); attempt %s in %.1f s", run.job.id, error, failures + 1, delay
        )
        attempt = run.job.attempt
        await self._change(
            run,
            lambda j: jobs.update(
                j,
                self._clock(),
                error=error,
                failures=failures,
                attempt=attempt + 1,
                lease_expires_at=self._clock() + self._settings.lease_seconds + delay,
            ),
        )
        self._metrics.retried(run.job)

    async def _back_off(self, run: Run, failures: int) -> None:
        """Sleep the backoff before the next attempt, unless a cancellation wakes us first."""
        delay = self._retry_delay(failures)
        run.new_context()
        run.wake.clear()
        if not run.ctx.cancelled:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await run.wake.wait()

    async def _finish(
        self,
        job_id: str,
        status: JobStatus,
        fields: dict[str, Any],
        *,
        known: tuple[Job, str] | None = None,
        guard: Callable[[Job], bool] | None = None,
    ) -> None:
        """Write a final status unless another writer made the job final first."""
        run = self._runs.get(job_id)
        attempt = run.job.attempt if run is not None else None
        if known is None and run is not None:
            known = run.trusted(self._clock(), self._settings.lease_seconds / 3)

        def change(job: Job) -> Job | None:
            if job.is_final or (attempt is not None and not self._mine(job, attempt)):
                return None
            if guard is not None and not guard(job):
                return None
            return jobs.transition(job, status, self._clock(), **fields)

        current, written, _ = await self._store.mutate(job_id, change, known=known)
        final = written or current
        if final is not None:
            self._waiters.notify(final.public())
        if written is not None:
            self._metrics.finished(written)
            logger.info("job %s is %s", job_id, status)

    def begin_shutdown(self, grace: float) -> None:
        """The replica is stopping: claim nothing new, let running jobs finish for ``grace``
        seconds, then hand back what still runs while the server and the sidecar are up."""
        if self._stopping:
            return
        self._stopping = True
        self._grace = asyncio.create_task(self._close_after(grace), name="shutdown-grace")

    async def _close_after(self, grace: float) -> None:
        await asyncio.sleep(grace)
        self._grace = None
        await self.close()

    async def close(self) -> None:
        """Stop local handlers and hand their jobs back (lease ended, published): another
        replica's worker takes them over as the event reaches it. Their deliveries answer
        RETRY, so the broker hands them out again after processingTimeout should the event
        not get through; if the hand-back write fails, the lease runs out. Once only."""
        self._stopping = True
        if self._closing is None:
            if self._grace is not None:
                self._grace.cancel()  # still waiting out the grace
            self._closing = asyncio.create_task(self._stop_runs())
        await asyncio.shield(self._closing)

    async def _stop_runs(self) -> None:
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._threads.shutdown()

    async def _hand_back(self, run: Run) -> None:
        """End the lease of a job we still run and publish that (``job.updated``, with
        ``handedBack``), which the queue brings to another replica's worker to take over at
        once. The event goes out twice. Redis hands a new stream entry to the reader that has
        waited longest, which may be this replica's own sidecar, and it cannot deliver the
        event to an app that no longer takes connections; the copy published right after then
        goes to another reader, as that one now waits behind the others. A copy that stays
        here is handed out again after ``processingTimeout``, as the job's own delivery is."""
        handed: tuple[Job, str] | None = None
        try:
            async with asyncio.timeout(HAND_BACK_SECONDS):
                handed = await self._end_lease(run)
                if handed is not None:
                    again = functools.partial(_if_still, handed[0])
                    await self._store.mutate(handed[0].id, again, known=handed)
        except (Conflict, StoreUnavailable, TimeoutError) as exc:
            if handed is None:
                logger.warning(
                    "job %s: could not hand it back (%s); its lease will run out",
                    run.job.id,
                    exc,
                )
            else:
                logger.warning("job %s: handed back, announced once (%s)", run.job.id, exc)

    async def _end_lease(self, run: Run) -> tuple[Job, str] | None:
        """Write the job handed back; None when it is no longer ours. Our etag may be stale: a
        progress write cut off by the cancellation may have landed without our hearing its
        etag, so a lost race re-reads while the job is ours."""
        attempt = run.job.attempt
        known = run.known
        for _ in range(CLAIM_TRIES):
            job, etag = known if known is not None else await self._store.get(run.job.id)
            known = None
            if job is None or not self._mine(job, attempt):
                return None
            handed = jobs.hand_back(job, self._clock())
            try:
                new_etag = await self._store.write(handed, etag)
            except Conflict:
                continue
            logger.info("job %s handed back by %s", job.id, self._me)
            self._waiters.notify(handed.public())
            return handed, new_etag
        raise Conflict(f"job {run.job.id} kept changing")


def _if_still(handed: Job, job: Job) -> Job | None:
    """``job``, to save again unchanged (its event published again), while it is still as it
    was handed back; None once another replica took it over or anything else changed it."""
    return job if job.handed_back and job.sequence == handed.sequence else None
