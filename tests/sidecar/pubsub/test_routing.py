"""CEL routing rules: first match wins, default last, errors as daprd treats them."""

from __future__ import annotations

import json

import pytest

from sidecar import json_reader
from sidecar.components import RouteRule
from sidecar.routing import Router, RuleCompileError, RuleEvaluationError

RULES = (
    RouteRule('event.type == "job.completed" && event.data.owner == "microservice-x"', "/done"),
    RouteRule('event.type.startsWith("job.")', "/jobs"),
)


def event(type_: str, **data: object) -> dict[str, object]:
    return {"id": "1", "type": type_, "data": data}


def test_first_matching_rule_wins() -> None:
    router = Router(RULES, "/fallback")
    assert router.route(event("job.completed", owner="microservice-x")) == "/done"
    assert router.route(event("job.completed", owner="someone-else")) == "/jobs"


def test_default_is_used_when_no_rule_matches() -> None:
    assert Router(RULES, "/fallback").route(event("other")) == "/fallback"


def test_no_match_and_no_default_is_none() -> None:
    assert Router(RULES).route(event("other")) is None


def test_v1_route_is_a_match_all_rule() -> None:
    assert Router((), "/events").route(event("anything")) == "/events"


def test_empty_expression_matches_everything() -> None:
    assert Router((RouteRule("", "/all"),)).route(event("x")) == "/all"


def test_short_circuit_avoids_missing_field_errors() -> None:
    # The type check is false, so the missing data.owner is never an error (CEL && semantics).
    assert Router(RULES[:1]).route(event("job.started")) is None


def test_missing_field_fails_the_message_like_daprd() -> None:
    with pytest.raises(RuleEvaluationError, match="owner"):
        Router(RULES[:1], "/fallback").route(event("job.completed"))


def test_non_boolean_result_is_an_error() -> None:
    with pytest.raises(RuleEvaluationError, match="not a boolean"):
        Router((RouteRule("event.type", "/x"),)).route(event("job"))


def test_bad_expression_is_a_startup_error_naming_rule_and_place() -> None:
    with pytest.raises(RuleCompileError, match=r"event.type ==.*in subscription pubsub/jobs"):
        Router((RouteRule("event.type ==", "/x"),), where="subscription pubsub/jobs")


def test_lone_surrogate_in_a_string_is_read_as_go_json_reads_it() -> None:
    # Python's JSON keeps "\ud800" as an unpaired surrogate, which CEL refuses; Go's JSON (daprd)
    # turns it into U+FFFD at decoding, so the rule sees that and the message is routed.
    rules = (RouteRule('event.data.owner == "x\ufffd"', "/mended"),)
    wire = json.dumps(event("job", owner="x\ud800")).encode()
    assert b"\\ud800" in wire
    assert Router(rules, "/fallback").route(json_reader.loads(wire)) == "/mended"
    wire = json.dumps(event("job.completed", owner="\udc00")).encode()
    assert Router(RULES, "/fallback").route(json_reader.loads(wire)) == "/jobs"


def test_an_event_cel_cannot_take_is_an_evaluation_error() -> None:
    # A lone surrogate that did not come through the JSON reader is refused, not routed.
    with pytest.raises(RuleEvaluationError, match="cannot be given to the routing rules"):
        Router(RULES, "/fallback").route(event("job", owner="x\ud800"))


def test_rules_see_every_number_as_a_double_as_under_daprd() -> None:
    """daprd hands CEL the map json.Unmarshal made, where every number is a float64: a rule
    that works on an int here but fails under daprd (or the other way round) must not exist."""
    delivered = json_reader.read_delivered(
        b'{"type": "t", "data": {"n": 5, "big": 18446744073709551616}}'
    )
    assert (
        Router((RouteRule("event.data.n + 1.0 == 6.0", "/double"),)).route(delivered) == "/double"
    )
    assert Router((RouteRule("type(event.data.n) == double", "/d"),)).route(delivered) == "/d"
    assert Router((RouteRule("event.data.big > 1.8e19", "/big"),)).route(delivered) == "/big"
    assert Router((RouteRule("int(event.data.n) % 2 == 1", "/odd"),)).route(delivered) == "/odd"
    with pytest.raises(RuleEvaluationError):
        Router((RouteRule("event.data.n + 1 == 6", "/int"),)).route(delivered)
    # Comparisons across int and double hold in CEL, as before.
    assert Router((RouteRule("event.data.n == 5 && event.data.n < 10", "/eq"),)).route(delivered)
    # The event itself keeps its values: only what the rules see is converted.
    assert delivered["data"]["n"] == 5 and isinstance(delivered["data"]["n"], int)


def test_a_whole_event_rule_sees_doubles_too() -> None:
    rules = (RouteRule("has(event.data) && type(event) == map && event.data.n == 5.0", "/w"),)
    assert Router(rules).route({"type": "t", "data": {"n": 5, "flag": True}}) == "/w"
    rules = (RouteRule("type(event.data.flag) == bool", "/b"),)  # booleans stay booleans
    assert Router(rules).route({"type": "t", "data": {"n": 5, "flag": True}}) == "/b"


def _decisions(router: Router, events: list[dict[str, object]]) -> list[str | None | type]:
    answers: list[str | None | type] = []
    for e in events:
        try:
            answers.append(router.route(e))
        except RuleEvaluationError:
            answers.append(RuleEvaluationError)
    return answers


def test_remembered_decisions_are_the_ones_fresh_rules_make() -> None:
    """The memo keys on what the rules observe (every number a double): a repeat of an earlier
    event's observed part gets that event's decision, and any difference gets its own."""
    events = [
        event("job.completed", owner="microservice-x", n=1),
        event("job.completed", owner="microservice-x", n=2),  # n is not observed
        event("job.completed", owner="someone-else"),
        event("job.created", owner="microservice-x"),
        event("job.completed"),  # owner missing: an error, every time
        event("other"),
        {"id": "2", "type": "job.completed", "data": {"owner": 1}},
        {"id": "3", "type": "job.completed", "data": {"owner": True}},
        {"id": "4", "type": "job.completed", "data": {"owner": 1.0}},
    ] * 3
    remembering = _decisions(Router(RULES, "/fallback"), events)
    fresh = [_decisions(Router(RULES, "/fallback"), [e])[0] for e in events]
    assert remembering == fresh
    assert remembering[:6] == ["/done", "/done", "/jobs", "/jobs", RuleEvaluationError, "/fallback"]


def test_a_repeated_observation_is_not_evaluated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluated: list[object] = []
    original = Router._evaluate

    def counting(self: Router, observed: object) -> str | None:
        evaluated.append(observed)
        return original(self, observed)

    monkeypatch.setattr(Router, "_evaluate", counting)
    router = Router(RULES, "/fallback")
    for n in range(20):
        assert router.route(event("job.completed", owner="microservice-x", n=n)) == "/done"
    assert len(evaluated) == 1


def test_rules_that_observe_a_per_event_field_stop_remembering() -> None:
    """An id or a timestamp makes every key new: after the trial the memo turns itself off
    (and the decisions stay right)."""
    router = Router((RouteRule('event.id != ""', "/any"),))
    for n in range(600):
        assert router.route({"id": str(n), "type": "t"}) == "/any"
    assert router.route({"id": "", "type": "t"}) is None
    assert not router._memo.enabled
