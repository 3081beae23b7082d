"""When a running job's own etag is trusted for its next change without a read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from job_orchestrator import jobs
from job_orchestrator.handlers import MESSAGE_CHARS, JobFailure
from job_orchestrator.runs import Outcome, Run

CLAIMED_AT = 1000.0
LEASE = 30.0
MARGIN = LEASE / 3
RESULT_LIMIT = 1000


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _run(etag: str, loop: asyncio.AbstractEventLoop) -> Run:
    job = jobs.new_job(
        "j1", "wait", {"seconds": 0}, owner=None, max_attempts=1, run_timeout_seconds=None, now=1.0
    )
    return Run(jobs.claim(job, "replica-a", CLAIMED_AT, LEASE), etag, loop)


def test_our_own_last_etag_is_trusted_while_the_lease_is_safe(
    loop: asyncio.AbstractEventLoop,
) -> None:
    run = _run("2", loop)
    assert run.trusted(CLAIMED_AT + 1, MARGIN) == (run.job, "2")
    run.etag = "3"
    assert run.trusted(CLAIMED_AT + LEASE - MARGIN, MARGIN) == (run.job, "3")


def test_an_unknown_etag_is_never_trusted(loop: asyncio.AbstractEventLoop) -> None:
    run = _run("", loop)
    assert run.trusted(CLAIMED_AT, MARGIN) is None
    run.etag = "2"
    run.etag = ""
    assert run.trusted(CLAIMED_AT, MARGIN) is None


def test_a_lease_near_its_end_means_reading_first(loop: asyncio.AbstractEventLoop) -> None:
    run = _run("2", loop)
    assert run.trusted(CLAIMED_AT + LEASE - MARGIN + 0.01, MARGIN) is None
    assert run.known == (run.job, "2")  # a lease renewal (no event) may still use it


def test_a_change_heard_from_another_writer_means_reading_first(
    loop: asyncio.AbstractEventLoop,
) -> None:
    run = _run("2", loop)
    run.cancel()  # a cancel request or a final write elsewhere reached us
    assert run.trusted(CLAIMED_AT + 1, MARGIN) is None
    run.etag = "4"  # our own write after reading it again
    assert run.trusted(CLAIMED_AT + 1, MARGIN) == (run.job, "4")


def test_a_result_json_cannot_carry_fails_the_run(loop: asyncio.AbstractEventLoop) -> None:
    """Stored, NaN would make every answer carrying the job fail; the run fails instead."""

    async def handler(result: object) -> object:
        return result

    run = _run("2", loop)
    done = loop.create_task(handler({"scores": [1.0, float("nan")]}))
    loop.run_until_complete(done)
    outcome, error = run.outcome(done, RESULT_LIMIT)
    assert outcome is Outcome.FAILED
    assert error == (
        "the handler returned a non-finite number at result.scores.1, which JSON cannot carry"
    )
    fine = loop.create_task(handler({"scores": [1.0]}))
    loop.run_until_complete(fine)
    assert run.outcome(fine, RESULT_LIMIT) == (Outcome.DONE, {"scores": [1.0]})
    as_json = loop.create_task(handler({"pair": (1, 2), 3: "three"}))
    loop.run_until_complete(as_json)
    assert run.outcome(as_json, RESULT_LIMIT) == (Outcome.DONE, {"pair": [1, 2], "3": "three"})


def test_a_handlers_error_is_stored_as_unicode_and_cut_when_long(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """An error message no answer could carry, or one of megabytes, is stored as text that
    fits; an exception whose message cannot even be read still fails the run, saying so."""

    class Unreadable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    async def fail(exc: Exception) -> None:
        raise exc

    run = _run("2", loop)
    for raised, stored in [
        (JobFailure("bad \ud800 byte"), "bad \ufffd byte"),
        (ValueError("v" * (MESSAGE_CHARS + 3)), "ValueError: " + "v" * (MESSAGE_CHARS - 12)),
        (Unreadable(), "Unreadable: (its message could not be read: RuntimeError)"),
    ]:
        task = loop.create_task(fail(raised))
        loop.run_until_complete(asyncio.wait([task]))
        outcome, error = run.outcome(task, RESULT_LIMIT)
        assert outcome is Outcome.FAILED
        assert error.startswith(stored)
        assert len(error) <= MESSAGE_CHARS + len("... (99 more characters cut)")


def test_a_cancelled_error_from_the_handlers_own_code_fails_the_run(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Only a cancel request ends a job Canceled (and announces job.canceled)."""

    async def gives_up() -> None:
        raise asyncio.CancelledError  # e.g. awaiting a library's task that was cancelled

    run = _run("2", loop)
    task = loop.create_task(gives_up())
    loop.run_until_complete(asyncio.wait([task]))
    assert task.cancelled()
    assert run.outcome(task, RESULT_LIMIT) == (
        Outcome.FAILED,
        "the handler raised CancelledError, but no cancel was asked",
    )
    run.ctx.cancel()  # asked: the same end is a cancellation
    assert run.outcome(task, RESULT_LIMIT) == (Outcome.CANCELED, None)
