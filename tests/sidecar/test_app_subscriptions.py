"""The app's ``GET /dapr/subscribe`` answer, decoded as daprd's SubscriptionJSON is by Go."""

from __future__ import annotations

import pytest

from sidecar import app_subscriptions
from sidecar.app_subscriptions import SubscribeAnswerError
from sidecar.components import Subscription


def test_keys_match_fields_in_any_case() -> None:
    (sub,) = app_subscriptions.parse(
        [
            {
                "PubsubName": "p",
                "TOPIC": "t",
                "DeadLetterTopic": "dlq",
                "Metadata": {"rawPayload": "true"},
                "ROUTES": {"Rules": [{"MATCH": "true", "Path": "/r"}], "Default": "/d"},
                "BulkSubscribe": {"Enabled": True, "MaxMessagesCount": 5},
            }
        ]
    )
    assert (sub.pubsubname, sub.topic, sub.dead_letter_topic) == ("p", "t", "dlq")
    assert [(r.match, r.path) for r in sub.rules] == [("true", "/r")]
    assert sub.default_path == "/d"
    assert sub.metadata == {"rawPayload": "true"}
    assert (sub.bulk, sub.bulk_max_messages) == (True, 5)


def test_no_field_is_required_and_a_routeless_item_is_dropped_alone() -> None:
    subs = app_subscriptions.parse(
        [
            {"topic": "orphan", "route": "/o"},  # no pubsub: kept, never subscribed
            {"pubsubname": "p", "route": "/n"},  # topic ""
            None,  # a zero SubscriptionJSON: no route
            {"pubsubname": "p", "topic": "unrouted"},
            {"pubsubname": "p", "topic": "t", "route": "/t"},
        ]
    )
    assert [(s.pubsubname, s.topic, s.default_path) for s in subs] == [
        ("", "orphan", "/o"),
        ("p", "", "/n"),
        ("p", "t", "/t"),
    ]


def test_the_last_key_wins_and_null_leaves_a_field_as_it_was() -> None:
    (sub,) = app_subscriptions.parse(
        [
            {
                "topic": "first",
                "Topic": "second",
                "route": "/r",
                "Route": None,
                "routes": {"default": "/a"},
                "Routes": {"rules": [{"path": "/x"}]},  # decoded into the same struct
                "metadata": {"a": "1"},
                "Metadata": {"b": None},  # the map keeps its entries
            }
        ]
    )
    assert sub.topic == "second"
    assert sub.default_path == "/a"
    assert [r.path for r in sub.rules] == ["/x"]
    assert sub.metadata == {"a": "1", "b": ""}
    (cleared,) = app_subscriptions.parse(
        [{"route": "/r", "metadata": {"a": "1"}, "METADATA": None}]
    )
    assert cleared.metadata == {}


@pytest.mark.parametrize(
    "answer",
    [
        {"pubsubname": "p"},
        [{"topic": 5, "route": "/r"}],
        [{"topic": "t", "route": "/r", "metadata": {"a": 1}}],
        [{"topic": "t", "route": "/r", "bulkSubscribe": {"enabled": "yes"}}],
        [{"topic": "t", "route": "/r", "bulkSubscribe": {"maxMessagesCount": 1.0}}],
        [{"topic": "t", "route": "/r", "bulkSubscribe": {"maxAwaitDurationMs": 2**31}}],
        [{"topic": "t", "routes": {"rules": [None]}}],
        [{"topic": "t", "routes": []}],
        ["t"],
    ],
)
def test_a_value_of_the_wrong_type_fails_the_whole_answer(answer: object) -> None:
    with pytest.raises(SubscribeAnswerError):
        app_subscriptions.parse(answer)


def test_the_first_json_value_is_read_and_the_rest_ignored() -> None:
    (sub,) = app_subscriptions.read(b' [{"pubsubname": "p", "topic": "t", "route": "/r"}] trailing')
    assert sub.default_path == "/r"
    assert app_subscriptions.read(b"null") == []
    with pytest.raises(SubscribeAnswerError, match="not JSON"):
        app_subscriptions.read(b"[{")


def _sub(pubsub: str, topic: str, path: str, source: str = "programmatic") -> Subscription:
    return Subscription(pubsubname=pubsub, topic=topic, default_path=path, source=source)


def test_one_subscription_per_pubsub_and_topic_the_apps_winning_as_in_daprd() -> None:
    declarative = [
        _sub("p", "shared", "/declared", "a.yaml"),
        _sub("p", "double", "/first", "b.yaml"),
        _sub("p", "double", "/second", "c.yaml"),  # a declarative one after the first: unused
        _sub("q", "shared", "/other-pubsub", "d.yaml"),
    ]
    programmatic = [
        _sub("p", "twice", "/twice-first"),
        _sub("p", "shared", "/app"),  # takes the declarative one's place
        _sub("p", "twice", "/twice-second"),  # the app's last one wins
    ]
    chosen = app_subscriptions.in_effect(declarative, programmatic)
    assert [(s.pubsubname, s.topic, s.default_path) for s in chosen] == [
        ("p", "shared", "/app"),
        ("p", "double", "/first"),
        ("q", "shared", "/other-pubsub"),
        ("p", "twice", "/twice-second"),
    ]


def test_programmatic_subscriptions() -> None:
    subs = app_subscriptions.parse(
        [
            {"pubsubname": "p", "topic": "t1", "route": "/one"},
            {
                "pubsubname": "p",
                "topic": "t2",
                "route": "/ignored",
                "routes": {"rules": [{"match": "true", "path": "/r"}], "default": "/d"},
                "deadLetterTopic": "dlq",
                "metadata": {"rawPayload": "true"},
            },
        ]
    )
    assert subs[0].default_path == "/one"
    assert subs[1].default_path == "/d"
    assert subs[1].rules[0].path == "/r"
    assert subs[1].dead_letter_topic == "dlq"
    # daprd requires no field; an item without a route is dropped alone (filterSubscriptions).
    assert app_subscriptions.parse([{"pubsubname": "p"}]) == []


def test_programmatic_subscriptions_are_read_as_gos_json_decoder_reads_them() -> None:
    # daprd unmarshals the answer with encoding/json: an unpaired surrogate escape and a byte
    # that is not UTF-8 each become U+FFFD instead of failing every subscription of the app.
    body = (
        b'[{"pubsubname": "p", "topic": "t", "routes": {"rules": '
        b'[{"match": "event.data.note == \\"\\ud800\\"", "path": "/r\xff"}]}}]'
    )
    (sub,) = app_subscriptions.read(body)
    assert [(r.match, r.path) for r in sub.rules] == [('event.data.note == "\ufffd"', "/r\ufffd")]
    (sub,) = app_subscriptions.read(b'[{"pubsubname": "p", "topic": "t", "route": "/\\udc00"}]')
    assert sub.default_path == "/\ufffd"
    with pytest.raises(SubscribeAnswerError, match="not JSON"):
        app_subscriptions.read(b"[{")
