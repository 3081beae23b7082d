"""The app's ``GET /dapr/subscribe`` answer, decoded as daprd decodes it.

daprd (pkg/runtime/pubsub/subscriptions.go, GetSubscriptionsHTTP) reads the first JSON value
into ``[]SubscriptionJSON`` with Go's encoding/json (``sidecar.gojson``): keys in any case, no
field required. An item that names no pubsub, or one that is not loaded, is kept but never
subscribed; an item without any route is dropped with a warning (filterSubscriptions). A value
of the wrong type anywhere fails the whole answer, as Go's decoder fails it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sidecar import gojson
from sidecar.components import RouteRule, Subscription
from sidecar.json_reader import go_decode

logger = logging.getLogger(__name__)

LABEL = "GET /dapr/subscribe"


class SubscribeAnswerError(ValueError):
    """The answer cannot be decoded; daprd then starts none of the app's subscriptions."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}" if where else why)
        self.where = where
        self.why = why


def read(body: bytes) -> list[Subscription]:
    """The subscriptions of the raw answer (see ``parse``). Invalid UTF-8 and unpaired
    surrogate escapes become U+FFFD, and bytes after the first JSON value are ignored, as Go's
    json.Decoder reads them."""
    try:
        parsed = go_decode(body)
    except ValueError as exc:
        raise SubscribeAnswerError("", f"not JSON: {exc}") from None
    return parse(parsed)


def parse(body: Any) -> list[Subscription]:
    """The subscriptions of a decoded answer: v1 items (``route``) and v2 ones (``routes``),
    where ``routes.default`` wins over ``route``."""
    if body is None:
        return []
    if not isinstance(body, list):
        raise SubscribeAnswerError("", f"cannot unmarshal {_kind(body)} into []SubscriptionJSON")
    subscriptions: list[Subscription] = []
    for position, item in enumerate(body):
        # A null item is a zero SubscriptionJSON: no route, so dropped below.
        sub = _subscription(item if item is not None else {}, f"item {position}")
        if not sub.rules and not sub.default_path:
            logger.warning(
                "topic %s has an empty routes. removing from subscriptions list", sub.topic
            )
            continue
        subscriptions.append(sub)
    return subscriptions


def in_effect(
    declarative: Iterable[Subscription], programmatic: Iterable[Subscription]
) -> list[Subscription]:
    """One subscription per pubsub and topic, as daprd's component store lists them for
    delivery and for the metadata API (ListSubscriptionsAppByPubSub, ListTypedSubscriptions):
    the first declarative one, unless the app names the topic too; then the app's, in the
    declarative one's place, and of the app's own the last one."""
    chosen: list[Subscription] = []
    place: dict[tuple[str, str], int] = {}
    for sub in declarative:
        key = (sub.pubsubname, sub.topic)
        if key not in place:
            place[key] = len(chosen)
            chosen.append(sub)
    for sub in programmatic:
        key = (sub.pubsubname, sub.topic)
        if key in place:
            chosen[place[key]] = sub
        else:
            place[key] = len(chosen)
            chosen.append(sub)
    return chosen


def _subscription(item: Any, where: str) -> Subscription:
    if not isinstance(item, dict):
        raise SubscribeAnswerError(where, f"cannot unmarshal {_kind(item)} into SubscriptionJSON")
    routes = _struct(item, "routes", where)
    raw_rules = _slice(routes, "rules", f"{where}.routes")
    rules = []
    for index, rule in enumerate(raw_rules or []):
        at = f"{where}.routes.rules[{index}]"
        if not isinstance(rule, dict):
            # A null one is a nil *RuleJSON, which daprd dereferences: it fails too.
            raise SubscribeAnswerError(at, f"cannot unmarshal {_kind(rule)} into RuleJSON")
        rules.append(RouteRule(match=_string(rule, "match", at), path=_string(rule, "path", at)))
    bulk = _struct(item, "bulkSubscribe", where)
    bulk_at = f"{where}.bulkSubscribe"
    return Subscription(
        pubsubname=_string(item, "pubsubname", where),
        topic=_string(item, "topic", where),
        rules=tuple(rules),
        default_path=_string(routes, "default", f"{where}.routes") or _string(item, "route", where),
        metadata=_string_map(item, "metadata", where),
        dead_letter_topic=_string(item, "deadLetterTopic", where),
        bulk=_bool(bulk, "enabled", bulk_at),
        bulk_max_messages=_int32(bulk, "maxMessagesCount", bulk_at),
        bulk_max_await_ms=_int32(bulk, "maxAwaitDurationMs", bulk_at),
        source="programmatic",
    )


def _kind(value: Any) -> str:
    """The JSON kind, as Go's UnmarshalTypeError names it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _typed(obj: Mapping[str, Any], name: str, where: str, kind: str, ok: type) -> list[Any]:
    """Every non-null value given for the field, each checked against its Go type."""
    given = [v for v in gojson.values(obj, name) if v is not None]
    for value in given:
        if not isinstance(value, ok) or (ok is not bool and isinstance(value, bool)):
            raise SubscribeAnswerError(
                f"{where}.{name}", f"cannot unmarshal {_kind(value)} into {kind}"
            )
    return given


def _string(obj: Mapping[str, Any], name: str, where: str) -> str:
    given = _typed(obj, name, where, "string", str)
    return str(given[-1]) if given else ""


def _bool(obj: Mapping[str, Any], name: str, where: str) -> bool:
    given = _typed(obj, name, where, "bool", bool)
    return bool(given[-1]) if given else False


def _int32(obj: Mapping[str, Any], name: str, where: str) -> int:
    """An int32 field: Go refuses a fraction or exponent ("1.0", "1e2") and a value outside
    its range."""
    given = _typed(obj, name, where, "int32", int)
    for value in given:
        if not -(2**31) <= value < 2**31:
            raise SubscribeAnswerError(
                f"{where}.{name}", f"cannot unmarshal number {value} into int32"
            )
    return int(given[-1]) if given else 0


def _struct(obj: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    """A struct field: each object given is decoded into the same struct, so their keys add
    up, a later one setting a field again; a null leaves it as it was."""
    merged: dict[str, Any] = {}
    for value in _typed(obj, name, where, "struct", dict):
        for key, item in value.items():
            merged.pop(key, None)  # keeps the order in which fields were set
            merged[key] = item
    return merged


def _slice(obj: Mapping[str, Any], name: str, where: str) -> list[Any] | None:
    """A slice field: the last array given replaces the others; a later null clears it."""
    _typed(obj, name, where, "slice", list)
    value: list[Any] | None = gojson.field(obj, name, null_clears=True)
    return value


def _string_map(obj: Mapping[str, Any], name: str, where: str) -> dict[str, str]:
    """A map[string]string field: objects given add up (Go keeps the map's entries), a null
    clears it, a null value is ""."""
    result: dict[str, str] = {}
    for value in gojson.values(obj, name):
        if value is None:
            result = {}
            continue
        if not isinstance(value, dict):
            raise SubscribeAnswerError(
                f"{where}.{name}", f"cannot unmarshal {_kind(value)} into map[string]string"
            )
        for key, item in value.items():
            if item is not None and not isinstance(item, str):
                raise SubscribeAnswerError(
                    f"{where}.{name}.{key}", f"cannot unmarshal {_kind(item)} into string"
                )
            result[key] = item or ""
    return result
