"""The event projection of CEL rules: only what a rule can observe is converted, same results."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from sidecar.cel_paths import projection
from sidecar.components import RouteRule
from sidecar.routing import Router, RuleEvaluationError

OWNER_RULE = (
    "has(event.data) && type(event.data) == map && has(event.data.owner) && "
    'event.data.owner == "microservice-x"'
)
JOB = {
    "id": "j1",
    "owner": "microservice-x",
    "status": "Completed",
    "input": {"seconds": 0},
    "result": {"waited": 0, "tags": ["a", "b"]},
    "changedBy": "replica-1",
}
EVENT = {"id": "e1", "type": "job.completed", "time": "2026-11-22T12:00:00Z", "data": JOB}


def test_a_field_comparison_keeps_only_that_field() -> None:
    assert projection(['event.type == "job.created"']).apply(EVENT) == {"type": "job.completed"}


def test_has_and_type_keep_the_key_but_not_the_rest_of_the_map() -> None:
    assert projection([OWNER_RULE]).apply(EVENT) == {"data": {"owner": "microservice-x"}}
    assert projection(["has(event.data)"]).apply(EVENT) == {"data": {}}


def test_rules_of_one_subscription_are_combined() -> None:
    view = projection(['event.type == "x"', "event.data.changedBy == 'r'"])
    assert view.apply(EVENT) == {"type": "job.completed", "data": {"changedBy": "replica-1"}}


@pytest.mark.parametrize(
    ("expression", "kept"),
    [
        ("event.data.result.tags.exists(t, t == 'a')", {"data": {"result": {"tags": ["a", "b"]}}}),
        ("event.data.result.size() > 0", {"data": {"result": JOB["result"]}}),
        ("size(event.data) > 1", {"data": JOB}),
        ("event.data['owner'] == 'x'", {"data": JOB}),
        ('"event" == event.type || true', EVENT),
        ("event == {}", EVENT),
        ("[1].exists(event, event == 1)", EVENT),
        ("event.?data.hasValue()", EVENT),
        ("has(event.data.owner) ? event.data : false", {"data": JOB}),
    ],
)
def test_uses_it_cannot_narrow_keep_everything_they_touch(
    expression: str, kept: dict[str, Any]
) -> None:
    assert projection([expression]).apply(EVENT) == kept


def test_values_that_are_not_maps_are_kept_as_they_are() -> None:
    event = {**EVENT, "data": "a string payload"}
    assert projection([OWNER_RULE]).apply(event) == {"data": "a string payload"}


EXPRESSIONS = [
    OWNER_RULE,
    'event.type == "job.created"',
    'event.type in ["job.completed", "job.failed"] || event.data.cancelRequested == true',
    'timestamp(event.time) > timestamp("2026-01-01T00:00:00Z") && event.data.changedBy != "me"',
    "event.data.owner",  # not a boolean
    "event.data.owner == 'microservice-x'",  # an error when data is no map or lacks owner
    "has(event.data.result.tags) && event.data.result.tags[0] == 'a'",
    "type(event.data) == string",
    "event.data.input.seconds == 0",
]
EVENTS = [
    EVENT,
    {**EVENT, "type": "job.created", "data": {**JOB, "owner": None}},
    {**EVENT, "type": "job.updated", "data": {**JOB, "cancelRequested": True}},
    {**EVENT, "data": "text"},
    {k: v for k, v in EVENT.items() if k != "data"},
    {**EVENT, "data": {"result": {}}},
    {**EVENT, "data": [1, 2]},
]


def _outcome(program: Any, event: Any) -> tuple[str, Any]:
    context = cel.Context()
    context.add_variable("event", event)
    try:
        return "value", program.execute(context)
    except Exception as exc:  # the kind of failure must match too
        return "error", type(exc).__name__


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_projection_never_changes_a_result(expression: str) -> None:
    program = cel.compile(expression)
    view = projection([expression])
    for event in EVENTS:
        assert _outcome(program, view.apply(event)) == _outcome(program, dict(event)), event


def test_router_routes_and_fails_on_the_projected_event_as_on_the_whole() -> None:
    router = Router((RouteRule(OWNER_RULE, "/mine"),))
    assert router.route(EVENT) == "/mine"
    assert router.route({**EVENT, "data": {**JOB, "owner": "other"}}) is None
    failing = Router((RouteRule("event.data.missing == 1", "/x"),))
    with pytest.raises(RuleEvaluationError):
        failing.route(EVENT)
