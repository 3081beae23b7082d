"""Which topics of a pubsub component an app may publish to or subscribe to (daprd's scopes).

Read from the component's metadata (names in any case; spaces in values are ignored):

- ``publishingScopes`` / ``subscriptionScopes``: ``app1=topic1,topic2;app2=topic3``. An app
  listed may use only the topics listed for it (``app1=`` lists none, so it may use none); an
  app not listed may use any topic that is not protected.
- ``allowedTopics``: when set, no app may use any other topic.
- ``protectedTopics``: a topic only the apps that list it in their scope may use.

As daprd's ``IsOperationAllowed`` (pkg/runtime/pubsub/adapter.go) and pkg/scopes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sidecar.components import Component

PUBLISHING = "publishingScopes"
SUBSCRIPTION = "subscriptionScopes"
ALLOWED = "allowedTopics"
PROTECTED = "protectedTopics"


@dataclass(frozen=True, slots=True)
class TopicScopes:
    """One app's view of one pubsub component's scoping metadata."""

    publishing: frozenset[str] = frozenset()  #: this app's publishingScopes topics
    subscribing: frozenset[str] = frozenset()  #: this app's subscriptionScopes topics
    allowed: frozenset[str] = frozenset()
    protected: frozenset[str] = frozenset()

    @classmethod
    def of(cls, metadata: Mapping[str, str], app_id: str) -> TopicScopes:
        return cls(
            publishing=frozenset(_app_topics(_param(metadata, PUBLISHING), app_id)),
            subscribing=frozenset(_app_topics(_param(metadata, SUBSCRIPTION), app_id)),
            allowed=frozenset(_topics(_param(metadata, ALLOWED))),
            protected=frozenset(_topics(_param(metadata, PROTECTED))),
        )

    def may_publish(self, topic: str) -> bool:
        return self._allows(topic, self.publishing)

    def may_subscribe(self, topic: str) -> bool:
        return self._allows(topic, self.subscribing)

    def _allows(self, topic: str, scoped: frozenset[str]) -> bool:
        if self.allowed and topic not in self.allowed:
            return False
        if topic not in self.protected and not scoped:
            return True
        return topic in scoped


#: What a component without scoping metadata gives every app: every topic.
UNSCOPED = TopicScopes()


def scopes_by_pubsub(components: Iterable[Component], app_id: str) -> dict[str, TopicScopes]:
    """The scopes of every pubsub component among ``components``, by component name."""
    return {
        component.name: TopicScopes.of(component.metadata, app_id)
        for component in components
        if component.type.startswith("pubsub.")
    }


def not_allowed_message(topic: str, app_id: str) -> str:
    """daprd's ErrPubsubForbidden text."""
    return f"topic {topic} is not allowed for app id {app_id}"


def _param(metadata: Mapping[str, str], name: str) -> str:
    """The value of metadata ``name`` matched in any case; "" when absent."""
    wanted = name.lower()
    for key, value in metadata.items():
        if key.lower() == wanted:
            return value
    return ""


def _topics(value: str) -> list[str]:
    """A comma-separated list, as daprd splits it: an empty value is no list, but an empty
    item (``a,,b``, or a value of only spaces) is a topic named ""."""
    if not value:
        return []
    return value.replace(" ", "").split(",")


def _app_topics(value: str, app_id: str) -> list[str]:
    """The topics ``app_id`` is given in ``app1=t1,t2;app2=t3`` (entries without ``=`` are
    skipped; an app may appear more than once)."""
    if not value:
        return []
    topics: list[str] = []
    for entry in value.replace(" ", "").split(";"):
        parts = entry.split("=")
        if len(parts) >= 2 and parts[0] == app_id:
            topics += parts[1].split(",")
    return topics
