"""Natural batching: alone when idle, together while a call is in flight, errors per request."""

from __future__ import annotations

import asyncio

import pytest

from dapr_support.batching import Batcher


class Recorder:
    """A batch call that records its batches and waits for ``release`` when told to."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def send(self, batch: list[int]) -> list[int | BaseException]:
        self.batches.append(batch)
        await self.release.wait()
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in batch]


async def test_an_idle_batcher_sends_a_request_alone_at_once() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.send)
    assert await asyncio.wait_for(batcher.submit(2), 5) == 20
    assert recorder.batches == [[2]]


async def test_requests_queued_behind_a_call_in_flight_share_the_next_call() -> None:
    recorder = Recorder(hold=True)
    batcher = Batcher(recorder.send, max_batch=3)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.01)  # the first call is now in flight, held
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 4, 6, 8)]
    await asyncio.sleep(0.01)
    recorder.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), 5)
    assert results == [0, 20, 40, 60, 80]
    assert recorder.batches == [[0], [2, 4, 6], [8]]  # never more than max_batch
    assert (batcher.calls, batcher.requests) == (3, 5)


async def test_a_batch_holds_at_most_max_weight_and_a_heavier_request_goes_alone() -> None:
    recorder = Recorder(hold=True)
    batcher = Batcher(recorder.send, max_batch=10, weigh=lambda n: n, max_weight=10)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.01)  # the first call is now in flight, held
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (4, 6, 2, 12, 8, 2)]
    await asyncio.sleep(0.01)
    recorder.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), 5)
    assert results == [0, 40, 60, 20, 120, 80, 20]
    assert recorder.batches == [[0], [4, 6], [2], [12], [8, 2]]


async def test_an_error_of_one_request_reaches_only_its_caller() -> None:
    batcher = Batcher(Recorder().send)
    results = await asyncio.wait_for(
        asyncio.gather(batcher.submit(2), batcher.submit(3), return_exceptions=True), 5
    )
    assert results[0] == 20
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 3"


async def test_a_failed_call_fails_its_batch_and_the_next_batch_still_goes() -> None:
    calls = 0

    async def flaky(batch: list[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("sidecar gone")
        return list(batch)

    batcher = Batcher(flaky)
    failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in failed)
    assert await asyncio.wait_for(batcher.submit(3), 5) == 3


async def test_a_request_whose_caller_gave_up_before_it_went_out_is_not_sent() -> None:
    recorder = Recorder(hold=True)
    batcher = Batcher(recorder.send)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.01)
    abandoned = asyncio.ensure_future(batcher.submit(2))
    kept = asyncio.ensure_future(batcher.submit(4))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    recorder.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, kept), 5) == [0, 40]
    assert recorder.batches == [[0], [4]]


async def test_a_request_made_as_the_sender_finishes_is_not_stranded() -> None:
    """The caller resumes before the finished sender's done-callbacks run; its next request
    must still find a sender."""

    async def instant(batch: list[int]) -> list[int | BaseException]:
        return list(batch)

    batcher = Batcher(instant)

    async def one_after_another() -> list[int]:
        return [await batcher.submit(n) for n in range(200)]

    assert await asyncio.wait_for(one_after_another(), 5) == list(range(200))


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_at_most_concurrency_calls_are_in_flight(concurrency: int) -> None:
    in_flight = peak = 0

    async def slow(batch: list[int]) -> list[int | BaseException]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return list(batch)

    batcher = Batcher(slow, max_batch=1, concurrency=concurrency)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(n) for n in range(9))), 5)
    assert results == list(range(9))
    assert peak == concurrency
    await batcher.close()


async def test_a_timeout_counts_the_wait_in_the_queue_and_a_request_given_up_is_never_sent() -> (
    None
):
    recorder = Recorder(hold=True)
    batcher = Batcher(recorder.send)
    first = asyncio.ensure_future(batcher.submit(0, timeout=0.05))
    await asyncio.sleep(0.01)  # in flight, held
    queued = asyncio.ensure_future(batcher.submit(2, timeout=0.05))
    for request in (first, queued):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(request, 5)
    recorder.release.set()
    assert await asyncio.wait_for(batcher.submit(4, timeout=5), 5) == 40
    assert recorder.batches == [[0], [4]]  # 2 was given up while it waited for 0's call
