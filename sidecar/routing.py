"""CEL routing rules of a subscription, compiled once and evaluated per event like daprd.

daprd (``pkg/runtime/subscription``) tries the rules in order and takes the first that is true;
the ``default`` route is a final rule without expression. An evaluation error (a missing field,
a non-boolean result) fails the whole message, exactly as daprd's ``findMatchingRoute`` does:
the runtime then dead-letters it or leaves it for redelivery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import cel

from sidecar.cel_paths import Projection, projection
from sidecar.components import RouteRule, Subscription
from sidecar.json_walk import replaced
from sidecar.route_memo import MISSING, RouteMemo


class RuleCompileError(ValueError):
    """A routing rule is not valid CEL: daprd refuses the subscriptions that hold it."""


class RuleEvaluationError(Exception):
    """A rule could not be evaluated on one event (daprd treats the message as failed)."""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    expression: str
    program: Any  #: a ``cel.Program``; None for a match-all rule (empty expression or default)
    path: str


class Router:
    """The compiled rules of one subscription; ``route`` is all that runs per message."""

    __slots__ = ("rules", "_view", "_memo")

    def __init__(self, rules: Sequence[RouteRule], default_path: str = "", where: str = "") -> None:
        compiled: list[CompiledRule] = []
        for rule in rules:
            expression = rule.match.strip()
            if not expression:
                compiled.append(CompiledRule("", None, rule.path))
                continue
            try:
                program = cel.compile(expression)
            except (ValueError, RuntimeError) as exc:
                context = f" in {where}" if where else ""
                raise RuleCompileError(
                    f"routing rule {expression!r} (path {rule.path!r}){context} is not valid CEL: "
                    f"{exc}. Fix the 'match' expression, e.g. event.type == \"job.completed\""
                ) from None
            compiled.append(CompiledRule(expression, program, rule.path))
        if default_path:
            compiled.append(CompiledRule("", None, default_path))
        self.rules: tuple[CompiledRule, ...] = tuple(compiled)
        #: Only the parts of the event the rules can observe are converted for CEL.
        self._view: Projection = projection(r.expression for r in self.rules if r.program)
        self._memo = RouteMemo()

    def route(self, event: Mapping[str, Any] | str) -> str | None:
        """The path of the first matching rule, or None when nothing matches.

        ``event`` is the CloudEvent, or for a bulk ``rawPayload`` subscription the payload as a
        string (daprd's bulk subscriber matches rules against ``string(message.Event)``).
        """
        if not self.rules:
            return None
        if self.rules[0].program is None:
            return self.rules[0].path
        observed = self._cel_event(event)
        if not self._memo.enabled:
            return self._evaluate(observed)
        key = repr(observed)  # what the rules see: JSON values, every number a float
        found = self._memo.get(key)
        if found is not MISSING:
            return cast(str | None, found)
        path = self._evaluate(observed)
        self._memo.put(key, path)
        return path

    def _evaluate(self, observed: Any) -> str | None:
        context: Any = None
        for rule in self.rules:
            if rule.program is None:
                return rule.path
            if context is None:
                # One conversion of the event into CEL values per message, shared by all rules.
                context = _context(observed)
            try:
                result = rule.program.execute(context)
            except (KeyError, RuntimeError, TypeError, ValueError) as exc:
                raise RuleEvaluationError(
                    f"error evaluating routing rule {rule.expression!r}: {exc}"
                ) from None
            if not isinstance(result, bool):
                raise RuleEvaluationError(
                    f"the result of match expression {rule.expression} was not a boolean"
                )
            if result:
                return rule.path
        return None

    def _cel_event(self, event: Mapping[str, Any] | str) -> Any:
        if isinstance(event, str):
            return event
        # daprd's rules see the map json.Unmarshal made, where every number is a float64: a
        # double in CEL, so `event.data.n + 1` fails there and must fail here too.
        return replaced(event if self._view.whole else self._view.apply(event), _as_double)


def check_rules(subscriptions: Iterable[Subscription]) -> None:
    """Compile the rules of every subscription, as daprd does when it reads them
    (CreateRoutingRule); RuleCompileError names the first one that is not CEL."""
    for sub in subscriptions:
        Router(sub.rules, sub.default_path, where(sub))


def where(sub: Subscription) -> str:
    """How log lines and errors name a subscription."""
    return f"subscription {sub.pubsubname}/{sub.topic} ({sub.source})"


def _as_double(value: Any) -> Any:
    # Every event routed was read by json_reader.read_delivered, which refuses a number no
    # float64 holds: float() cannot overflow here.
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _context(event: Any) -> Any:
    context = cel.Context()
    try:
        # Strings come mended as Go reads them (json_reader.loads): no lone surrogates.
        context.add_variable("event", event)
    except ValueError as exc:
        raise RuleEvaluationError(f"the event cannot be given to the routing rules: {exc}") from exc
    return context
