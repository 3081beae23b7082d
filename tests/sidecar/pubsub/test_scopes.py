"""Topic scoping read from pubsub component metadata, as daprd's IsOperationAllowed decides."""

from __future__ import annotations

import pytest

from sidecar.components import Component
from sidecar.config import parse_config
from sidecar.pubsub.scopes import UNSCOPED, TopicScopes, scopes_by_pubsub

#: The first example of Dapr's pub/sub scoping documentation.
SCOPED = {
    "publishingScopes": "app1=topic1;app2=topic2,topic3;app3=",
    "subscriptionScopes": "app2=;app3=topic1",
}
TOPICS = ("topic1", "topic2", "topic3")


def allowed(metadata: dict[str, str], app: str, operation: str) -> set[str]:
    scopes = TopicScopes.of(metadata, app)
    check = scopes.may_publish if operation == "publish" else scopes.may_subscribe
    return {topic for topic in TOPICS if check(topic)}


@pytest.mark.parametrize(
    ("app", "publish", "subscribe"),
    [
        ("app1", {"topic1"}, set(TOPICS)),
        ("app2", {"topic2", "topic3"}, set()),
        ("app3", set(), {"topic1"}),
        ("other", set(TOPICS), set(TOPICS)),
    ],
)
def test_an_app_listed_gets_its_topics_and_an_app_not_listed_every_topic(
    app: str, publish: set[str], subscribe: set[str]
) -> None:
    assert allowed(SCOPED, app, "publish") == publish
    assert allowed(SCOPED, app, "subscribe") == subscribe


def test_allowed_topics_bound_every_app_even_a_scoped_one() -> None:
    metadata = {"allowedTopics": "topic1,topic2", "publishingScopes": "app1=topic2,topic3"}
    assert allowed(metadata, "app1", "publish") == {"topic2"}
    assert allowed(metadata, "other", "publish") == {"topic1", "topic2"}
    assert allowed(metadata, "other", "subscribe") == {"topic1", "topic2"}


def test_a_protected_topic_is_only_for_apps_that_list_it() -> None:
    metadata = {
        "protectedTopics": "topic1",
        "publishingScopes": "writer=topic1",
        "subscriptionScopes": "reader=topic1,topic2",
    }
    assert allowed(metadata, "writer", "publish") == {"topic1"}
    assert allowed(metadata, "writer", "subscribe") == {"topic2", "topic3"}
    assert allowed(metadata, "reader", "publish") == {"topic2", "topic3"}
    # Listed in subscriptionScopes: only its own topics, not topic3 any more.
    assert allowed(metadata, "reader", "subscribe") == {"topic1", "topic2"}
    assert allowed(metadata, "stranger", "publish") == {"topic2", "topic3"}
    assert allowed(metadata, "stranger", "subscribe") == {"topic2", "topic3"}


def test_names_in_any_case_spaces_ignored_and_repeated_apps_merged() -> None:
    metadata = {
        "PUBLISHINGSCOPES": " app1 = topic1 ; app1=topic2 ; bad-entry ",
        "ProtectedTopics": "topic1 , topic2",
    }
    assert allowed(metadata, "app1", "publish") == {"topic1", "topic2"}
    assert allowed(metadata, "app2", "publish") == {"topic3"}


def test_empty_values_scope_nothing_but_a_value_of_spaces_allows_no_topic() -> None:
    empty = {"allowedTopics": "", "publishingScopes": "", "protectedTopics": ""}
    assert TopicScopes.of(empty, "app") == UNSCOPED
    # Go checks for "" before removing the spaces, so this is a list of one topic named "".
    assert allowed({"allowedTopics": "  "}, "app", "publish") == set()


def test_only_pubsub_components_have_scopes() -> None:
    pubsub = Component(name="ps", type="pubsub.redis", version="v1", metadata=dict(SCOPED))
    store = Component(name="st", type="state.redis", version="v1", metadata=dict(SCOPED))
    scopes = scopes_by_pubsub([pubsub, store], "app1")
    assert set(scopes) == {"ps"}
    assert scopes["ps"].may_publish("topic1")
    assert not scopes["ps"].may_publish("topic2")


def test_the_namespace_is_default_unless_namespace_is_set() -> None:
    # daprd's security.CurrentNamespace: the {namespace} template and the outbox's internal
    # topic read "default" outside Kubernetes; keyPrefix and metrics read NAMESPACE as it is.
    unset = parse_config(["--app-id", "a"], {})
    assert (unset.current_namespace, unset.namespace) == ("default", "")
    empty = parse_config(["--app-id", "a"], {"NAMESPACE": ""})
    assert (empty.current_namespace, empty.namespace) == ("", "")
    named = parse_config(["--app-id", "a"], {"NAMESPACE": "prod"})
    assert (named.current_namespace, named.namespace) == ("prod", "prod")
