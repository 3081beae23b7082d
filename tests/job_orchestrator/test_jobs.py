"""The job state machine and the worker's delivery decisions."""

from __future__ import annotations

import json

import pytest

from job_orchestrator import jobs
from job_orchestrator.events import may_be_rounded
from job_orchestrator.jobs import Delivery, InvalidTransition, Job, JobStatus

T0 = 1_700_000_000.0


def make(**changes: object) -> Job:
    job = jobs.new_job(
        "j1", "wait", {"seconds": 1}, owner="o", max_attempts=2, run_timeout_seconds=None, now=T0
    )
    return Job(**{**{f: getattr(job, f) for f in job.__dataclass_fields__}, **changes})


def test_new_job_starts_at_sequence_one() -> None:
    job = make()
    assert job.status is JobStatus.NEW
    assert job.sequence == 1
    assert job.public()["createdAt"] == "2023-11-14T22:13:20.000Z"


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (JobStatus.NEW, JobStatus.IN_PROGRESS),
        (JobStatus.NEW, JobStatus.CANCELED),
        (JobStatus.IN_PROGRESS, JobStatus.IN_PROGRESS),
        (JobStatus.IN_PROGRESS, JobStatus.COMPLETED),
        (JobStatus.IN_PROGRESS, JobStatus.FAILED),
        (JobStatus.IN_PROGRESS, JobStatus.CANCELED),
    ],
)
def test_allowed_transitions_bump_sequence(start: JobStatus, target: JobStatus) -> None:
    job = make(status=start)
    moved = jobs.transition(job, target, T0 + 5)
    assert moved.status is target
    assert moved.sequence == job.sequence + 1
    assert moved.updated_at == T0 + 5
    if target in jobs.FINAL_STATUSES:
        assert moved.completed_at == T0 + 5
        assert moved.lease_expires_at is None


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (JobStatus.NEW, JobStatus.COMPLETED),
        (JobStatus.NEW, JobStatus.FAILED),
        (JobStatus.NEW, JobStatus.NEW),
        (JobStatus.IN_PROGRESS, JobStatus.NEW),
    ]
    + [(final, target) for final in jobs.FINAL_STATUSES for target in JobStatus],
)
def test_forbidden_transitions(start: JobStatus, target: JobStatus) -> None:
    with pytest.raises(InvalidTransition):
        jobs.transition(make(status=start), target, T0)


def test_update_refuses_final_jobs() -> None:
    with pytest.raises(InvalidTransition):
        jobs.update(make(status=JobStatus.COMPLETED), T0, progress_percent=5)


def test_claim_and_takeover() -> None:
    claimed = jobs.claim(make(), "w1", T0 + 1, lease_seconds=30)
    assert (claimed.status, claimed.worker, claimed.attempt) == (JobStatus.IN_PROGRESS, "w1", 1)
    assert claimed.started_at == T0 + 1
    assert claimed.lease_expires_at == T0 + 31
    assert claimed.takeovers == 0
    taken = jobs.claim(claimed, "w2", T0 + 40, lease_seconds=30)
    assert (taken.worker, taken.attempt, taken.takeovers) == ("w2", 2, 1)
    assert taken.started_at == T0 + 1  # the job started with its first attempt


def test_a_handed_back_job_is_taken_over_at_once_without_counting_a_lost_worker() -> None:
    claimed = jobs.claim(make(), "w1", T0, lease_seconds=30)
    back = jobs.hand_back(claimed, T0 + 5)
    # A published change (its event brings the job to another worker), status unchanged.
    assert (back.sequence, back.updated_at) == (claimed.sequence + 1, T0 + 5)
    assert (back.status, back.worker) == (JobStatus.IN_PROGRESS, "w1")
    assert jobs.decide_delivery(back, T0 + 6, 3) is Delivery.TAKE_OVER  # not BUSY until T0+30
    taken = jobs.claim(back, "w2", T0 + 6, lease_seconds=30)
    assert (taken.worker, taken.attempt, taken.takeovers) == ("w2", 2, 0)
    assert not taken.handed_back
    assert Job.from_record(back.to_record()) == back
    # A hand-back is no lost worker: even after max_takeovers real losses it is taken over.
    lost = make(status=JobStatus.IN_PROGRESS, takeovers=3, lease_expires_at=T0)
    assert jobs.decide_delivery(lost, T0 + 1, 3) is Delivery.GIVE_UP
    assert jobs.decide_delivery(jobs.hand_back(lost, T0), T0 + 1, 3) is Delivery.TAKE_OVER
    again = jobs.claim(jobs.hand_back(taken, T0 + 7), "w3", T0 + 8, lease_seconds=30)
    assert again.takeovers == 0


def test_renew_is_not_a_published_change() -> None:
    claimed = jobs.claim(make(), "w1", T0, lease_seconds=30)
    renewed = jobs.renew(claimed, T0 + 60)
    assert renewed.lease_expires_at == T0 + 60
    assert renewed.sequence == claimed.sequence


def test_decide_delivery() -> None:
    decide = jobs.decide_delivery
    assert decide(None, T0, 3) is Delivery.DONE
    assert decide(make(status=JobStatus.FAILED), T0, 3) is Delivery.DONE
    assert decide(make(), T0, 3) is Delivery.CLAIM
    assert decide(make(cancel_requested=True), T0, 3) is Delivery.CANCEL
    running = jobs.claim(make(), "w1", T0, lease_seconds=30)
    assert decide(running, T0 + 10, 3) is Delivery.BUSY
    assert decide(running, T0 + 31, 3) is Delivery.TAKE_OVER
    cancel = jobs.update(running, T0 + 1, cancel_requested=True)
    assert decide(cancel, T0 + 10, 3) is Delivery.BUSY  # its worker is alive and will cancel
    assert decide(cancel, T0 + 31, 3) is Delivery.CANCEL
    lost_often = make(status=JobStatus.IN_PROGRESS, takeovers=3, lease_expires_at=T0)
    assert decide(lost_often, T0 + 1, 3) is Delivery.GIVE_UP


def test_record_round_trip_keeps_internals_and_public_hides_them() -> None:
    job = jobs.claim(make(), "w1", T0, lease_seconds=30)
    job = jobs.transition(job, JobStatus.COMPLETED, T0 + 2.5, result={"x": 1})
    record = job.to_record()
    assert Job.from_record(record) == job
    public = job.public()
    assert "leaseExpiresAt" not in public and "failures" not in public
    assert public["durationSeconds"] == 2.5
    assert public["owner"] == "o" and public["sequence"] == 3


def test_duration_is_the_same_on_every_read() -> None:
    """The answer to the waiting request (times in memory, to the microsecond) and every later
    read (times as stored, to the millisecond) give the same durationSeconds."""
    job = jobs.new_job(
        "d", "wait", {}, owner=None, max_attempts=1, run_timeout_seconds=None, now=1000.0
    )
    running = jobs.claim(job, "w", 1000.0009, 30)
    done = jobs.transition(running, JobStatus.COMPLETED, 1002.0031)
    answered = done.public()
    stored = Job.from_record(json.loads(json.dumps(done.to_record()))).public()
    assert (answered["startedAt"], answered["completedAt"]) == (
        "1970-01-01T00:16:40.000Z",
        "1970-01-01T00:16:42.003Z",
    )
    assert answered["durationSeconds"] == stored["durationSeconds"] == 2.003


@pytest.mark.parametrize(
    ("failures", "expected"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)]
)
def test_retry_delay_doubles_up_to_a_cap(failures: int, expected: float) -> None:
    assert jobs.retry_delay(failures, base=1.0, cap=30.0) == expected


def test_a_job_from_an_event_may_have_rounded_integers_past_2_to_the_53() -> None:
    """daprd's outbox relay writes an event's numbers as float64s: a job holding an integer it
    may not have kept is read from the store before anyone is answered with it."""
    assert not may_be_rounded({"id": "j", "sequence": 3, "input": {"seconds": 0.5, "n": 2**53 - 1}})
    assert may_be_rounded({"id": "j", "result": {"ids": [1, 9007199254740992]}})
    assert may_be_rounded({"id": "j", "input": {"n": -(2**60)}})
    assert not may_be_rounded({"id": "j", "result": {"x": 1e300, "ok": True}})
