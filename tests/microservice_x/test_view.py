"""The job-view reducer: idempotent, order-independent, never lets old news overwrite new."""

from __future__ import annotations

import itertools
from typing import Any

from microservice_x.events import JobEvent, parse_event
from microservice_x.view import MAX_HISTORY, JobView, Outcome, apply_event
from tests.microservice_x.test_events import cloud_event, job

STATUS_OF = {
    "job.created": "New",
    "job.updated": "InProgress",
    "job.completed": "Completed",
    "job.failed": "Failed",
    "job.canceled": "Canceled",
}


def event(event_type: str, sequence: int, event_id: str | None = None, **data: Any) -> JobEvent:
    fields: dict[str, Any] = {"status": STATUS_OF[event_type], "sequence": sequence, **data}
    return parse_event(
        cloud_event(id=event_id or f"ce-{sequence}", type=event_type, data=job(**fields))
    )


LIFE = [
    event("job.created", 1),
    event("job.updated", 2, progress={"percent": 0, "message": "started"}, attempt=1),
    event("job.updated", 3, progress={"percent": 50, "message": "half"}, attempt=1),
    event("job.completed", 4, progress={"percent": 100, "message": "done"}, result={"ok": 1}),
]


def fold(events: list[JobEvent]) -> JobView:
    view: JobView | None = None
    for number, item in enumerate(events):
        view = apply_event(view, item, f"t{number}").view
    assert view is not None
    return view


def test_first_event_creates_the_view_with_its_history() -> None:
    reduction = apply_event(None, LIFE[0], "t0")
    assert reduction.outcome is Outcome.APPLIED
    view = reduction.view
    assert (view.id, view.status, view.sequence, view.owner) == (
        "job-1",
        "New",
        1,
        "microservice-x",
    )
    assert [(r.id, r.type, r.receivedAt) for r in view.events] == [("ce-1", "job.created", "t0")]
    assert view.eventCount == 1
    assert view.lastEventAt == "t0"


def test_in_order_events_replace_the_state_and_record_arrival_times() -> None:
    view = fold(LIFE)
    assert view.status == "Completed"
    assert view.result == {"ok": 1}
    assert view.progress is not None and view.progress.percent == 100
    assert view.event_types == ["job.created", "job.updated", "job.updated", "job.completed"]
    assert [r.receivedAt for r in view.events] == ["t0", "t1", "t2", "t3"]
    assert view.eventCount == 4


def test_a_redelivered_event_changes_nothing() -> None:
    view = fold(LIFE[:2])
    again = apply_event(view, LIFE[1], "later")
    assert again.outcome is Outcome.DUPLICATE
    assert again.view == view


def test_the_same_change_under_another_event_id_is_a_duplicate() -> None:
    view = fold(LIFE[:2])
    copy = event("job.updated", 2, event_id="republished")
    assert apply_event(view, copy, "later").outcome is Outcome.DUPLICATE


def test_an_older_event_is_recorded_but_does_not_overwrite_a_newer_one() -> None:
    view = fold([LIFE[0], LIFE[3]])
    reduction = apply_event(view, LIFE[2], "late")
    assert reduction.outcome is Outcome.STALE
    assert reduction.view.status == "Completed"
    assert reduction.view.sequence == 4
    assert reduction.view.result == {"ok": 1}
    assert reduction.view.progress is not None and reduction.view.progress.percent == 100
    assert reduction.view.event_types == ["job.created", "job.updated", "job.completed"]
    assert reduction.view.events[1].receivedAt == "late"


def test_every_arrival_order_with_duplicates_ends_in_the_same_view() -> None:
    expected = fold(LIFE)
    for order in itertools.permutations(LIFE):
        with_duplicates = [*order, order[0], order[2]]
        view = fold(list(with_duplicates))
        assert view.status == expected.status
        assert view.sequence == 4
        assert view.result == expected.result
        assert view.event_types == expected.event_types
        assert view.eventCount == 4


def test_a_failed_job_keeps_its_error() -> None:
    view = fold([LIFE[0], event("job.failed", 2, error="boom")])
    assert view.status == "Failed"
    assert view.error == "boom"


def test_history_is_trimmed_of_old_progress_but_keeps_created_and_final() -> None:
    events = [event("job.created", 1)]
    events += [event("job.updated", n) for n in range(2, MAX_HISTORY + 10)]
    events.append(event("job.completed", MAX_HISTORY + 10))
    view = fold(events)
    assert len(view.events) == MAX_HISTORY
    assert view.event_types[0] == "job.created"
    assert view.event_types[-1] == "job.completed"
    assert view.eventCount == len(events)
    assert view.trimmedThrough == 11
    # A trimmed event coming back is recognised as seen, not re-added.
    assert apply_event(view, events[5], "again").outcome is Outcome.DUPLICATE
