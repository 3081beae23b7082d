"""When a running job's own etag is trusted for its next write without a read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from job_orchestrator import jobs, runs
from job_orchestrator.runs import Run


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _run(etag: str, loop: asyncio.AbstractEventLoop) -> Run:
    job = jobs.new_job(
        "j1", "wait", {"seconds": 0}, owner=None, max_attempts=1, run_timeout_seconds=None, now=1.0
    )
    return Run(jobs.claim(job, "replica-a", 1.0, 30.0), etag, loop)


def test_an_etag_just_written_is_fresh(loop: asyncio.AbstractEventLoop) -> None:
    run = _run("2", loop)
    assert run.fresh == (run.job, "2")
    run.etag = "3"
    assert run.fresh == (run.job, "3")


def test_an_unknown_etag_is_never_fresh(loop: asyncio.AbstractEventLoop) -> None:
    run = _run("", loop)
    assert run.fresh is None
    run.etag = "2"
    run.etag = ""
    assert run.fresh is None


def test_an_etag_older_than_the_window_must_be_read_again(
    monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop
) -> None:
    run = _run("2", loop)
    later = runs.time.monotonic() + runs.FRESH_ETAG_SECONDS + 0.01
    monkeypatch.setattr(runs.time, "monotonic", lambda: later)
    assert run.fresh is None
    assert run.known == (run.job, "2")  # a lease renewal may still use it
