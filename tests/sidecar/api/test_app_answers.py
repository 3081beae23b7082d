"""How a real sidecar reads what a real app answers, and what it adds on the way there, as
daprd does: redirects are answers (never followed), a subscriber's status and the
``GET /dapr/subscribe`` list are decoded with Go's case-insensitive keys, a publish's TTL is
contrib's TryGetTTL, and the hop between sidecars carries daprd's forwarding headers."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.procs import PYTHON, ManagedProcess, free_port, wait_until, wait_until_http
from tests.sidecar.api.conftest import Sidecar, component, unique

ANSWERS_APP = Path(__file__).resolve().parent / "answers_app.py"
TAG = os.urandom(3).hex()
APP_ID = f"answers-{TAG}"
HOST_IP = "10.77.0.1"  #: the caller sidecar's DAPR_HOST_IP
#: Two quick retries of a failed delivery, then the dead letter topic.
RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: answers
spec:
  policies:
    retries:
      twice:
        policy: constant
        duration: 50ms
        maxRetries: 2
  targets:
    components:
      pubsub:
        inbound:
          retry: twice
"""


def topic(name: str) -> str:
    return f"{name}-{TAG}"


def subscriptions() -> list[Any]:
    return [
        # Go matches keys to SubscriptionJSON's fields whatever their case.
        {"PubsubName": "pubsub", "TOPIC": topic("mixed"), "Route": "/answer/mixed"},
        # No field is required: these are kept (or dropped alone), not fatal to the others.
        {"topic": topic("orphan"), "route": "/answer/orphan"},
        {"pubsubname": "pubsub", "route": "/answer/no-topic"},
        None,
        {"pubsubname": "pubsub", "topic": topic("unrouted")},
        {
            "pubsubname": "pubsub",
            "topic": topic("moved"),
            "route": "/answer/redirect",
            "deadLetterTopic": topic("graves"),
        },
        {
            "pubsubname": "pubsub",
            "topic": topic("drop"),
            "route": "/answer/drop-upper",
            "deadLetterTopic": topic("graves"),
        },
        {
            "pubsubname": "pubsub",
            "topic": topic("retry"),
            "route": "/answer/retry-upper",
            "deadLetterTopic": topic("graves"),
        },
        {"pubsubname": "pubsub", "topic": topic("graves"), "route": "/answer/graves"},
        {
            "pubsubname": "pubsub",
            "topic": topic("ttl"),
            "route": "/answer/ttl",
            "deadLetterTopic": topic("graves"),
        },
    ]


class AnswersApp:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        env = {"APP_PORT": str(self.port), "SUBSCRIPTIONS": json.dumps(subscriptions())}
        self.proc = ManagedProcess(
            "answers-app", [PYTHON, str(ANSWERS_APP)], env=env, log_dir=log_dir
        )

    def start(self) -> AnswersApp:
        self.proc.start()
        wait_until_http(f"http://127.0.0.1:{self.port}/calls", process=self.proc)
        return self

    def calls(self, path: str, marker: str = "") -> list[dict[str, Any]]:
        answer = httpx.get(f"http://127.0.0.1:{self.port}/calls", timeout=5)
        return [c for c in answer.json() if c["path"] == path and marker in c["body"]]


@pytest.fixture(scope="module")
def answers_resources(workdir: Path, redis_server: RedisServer) -> Path:
    folder = workdir / "answers-resources"
    folder.mkdir()
    pubsub = component(
        "pubsub",
        "pubsub.redis",
        {"redisHost": redis_server.host},
    )
    (folder / "pubsub.yaml").write_text(pubsub)
    (folder / "resiliency.yaml").write_text(RESILIENCY)
    return folder


@pytest.fixture(scope="module")
def answers_app(workdir: Path) -> Iterator[AnswersApp]:
    app = AnswersApp(workdir).start()
    yield app
    app.proc.stop()


@pytest.fixture(scope="module")
def target(
    answers_resources: Path, registry: Path, answers_app: AnswersApp, workdir: Path
) -> Iterator[Sidecar]:
    car = Sidecar(APP_ID, answers_resources, registry, app_port=answers_app.port, log_dir=workdir)
    car.start(wait="/v1.0/healthz")  # ready: the app's subscriptions are started
    yield car
    car.stop()


@pytest.fixture(scope="module")
def hop_caller(answers_resources: Path, registry: Path, workdir: Path) -> Iterator[Sidecar]:
    """A sidecar without an app whose host address daprd's way is ``HOST_IP``."""
    env = {"DAPR_HOST_IP": HOST_IP}
    car = Sidecar(f"hop-caller-{TAG}", answers_resources, registry, env=env, log_dir=workdir)
    car.start()
    yield car
    car.stop()


def publish(car: Sidecar, name: str, marker: str, query: str = "") -> None:
    url = f"{car.http}/v1.0/publish/pubsub/{topic(name)}{query}"
    answer = httpx.post(url, json={"m": marker}, timeout=10)
    assert answer.status_code == 204, answer.text


def headers_named(call: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in call["header_list"] if key == name]


# --- Redirects (daprd's app channel: CheckRedirect returns ErrUseLastResponse) -------------


def test_invoke_hands_the_apps_redirect_back_as_it_is(
    target: Sidecar, hop_caller: Sidecar, answers_app: AnswersApp
) -> None:
    """Through the app's own sidecar and across the hop from another one, the caller gets the
    302 and its Location; nobody follows it to the landing page."""
    for car in (target, hop_caller):
        url = f"{car.http}/v1.0/invoke/{APP_ID}/method/answer/redirect"
        answer = httpx.post(url, content=b"x", timeout=10, follow_redirects=False)
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"] == "/answer/landing"
        assert answer.json() == {"moved": True}
    assert answers_app.calls("/answer/landing") == []


def test_a_subscribers_redirect_is_a_failed_delivery(
    target: Sidecar, answers_app: AnswersApp
) -> None:
    """A 3xx is no 2xx: the delivery failed, is retried, and goes to the dead letter topic."""
    marker = unique("moved")
    publish(target, "moved", marker)
    wait_until(lambda: bool(answers_app.calls("/answer/graves", marker)), timeout=20)
    assert len(answers_app.calls("/answer/redirect", marker)) == 3
    assert answers_app.calls("/answer/landing") == []


# --- A subscriber's status, in any letter case (contrib's AppResponse) ----------------------


def test_a_subscribers_status_is_read_in_any_letter_case(
    target: Sidecar, answers_app: AnswersApp
) -> None:
    """``{"Status":"DROP"}`` drops the event at once (to its dead letter topic);
    ``{"STATUS":"RETRY"}`` fails the delivery: retried, then dead-lettered."""
    dropped, retried = unique("drop"), unique("retry")
    publish(target, "drop", dropped)
    publish(target, "retry", retried)
    for marker in (dropped, retried):
        wait_until(lambda m=marker: bool(answers_app.calls("/answer/graves", m)), timeout=20)
    assert len(answers_app.calls("/answer/drop-upper", dropped)) == 1
    assert len(answers_app.calls("/answer/retry-upper", retried)) == 3
    (buried,) = answers_app.calls("/answer/graves", dropped)
    assert json.loads(buried["body"])["topic"] == topic("drop")


# --- GET /dapr/subscribe (SubscriptionJSON, no field required) -------------------------------


def test_subscriptions_keys_in_any_case_and_odd_items_spare_the_others(
    target: Sidecar, answers_app: AnswersApp
) -> None:
    """An item without pubsub name, one without topic, a null one and one without route do
    not cost the app its other subscriptions; ``PubsubName``/``TOPIC``/``Route`` work."""
    marker = unique("mixed")
    publish(target, "mixed", marker)
    wait_until(lambda: bool(answers_app.calls("/answer/mixed", marker)), timeout=20)
    listed = httpx.get(f"{target.http}/v1.0/metadata", timeout=10).json()["subscriptions"]
    topics = {(s["pubsubname"], s["topic"]) for s in listed}
    assert ("pubsub", topic("mixed")) in topics
    assert ("pubsub", topic("unrouted")) not in topics


# --- Publish TTL (contrib's TryGetTTL, as ApplyMetadata uses it) ------------------------------


def test_a_ttl_is_a_go_duration_or_seconds_under_either_key_in_any_case(
    target: Sidecar, answers_app: AnswersApp, redis_server: RedisServer
) -> None:
    """``ttl=0`` expires the event at once: never delivered, sent to the dead letter topic
    (where, still expired, it is dropped again); ``TTL=1m`` and ``TtlInSeconds=90`` set an
    expiration; a value TryGetTTL cannot read sets none and the publish still succeeds."""
    expired, minute, seconds, unread = (unique(n) for n in ("zero", "minute", "secs", "unread"))
    before = datetime.now(UTC)
    publish(target, "ttl", expired, "?metadata.ttl=0")
    publish(target, "ttl", minute, "?metadata.TTL=1m")
    publish(target, "ttl", seconds, "?metadata.TtlInSeconds=90")
    publish(target, "ttl", unread, "?metadata.ttlInSeconds=abc")
    with redis.Redis(port=redis_server.port) as broker:

        def dead_lettered() -> bool:
            entries: Any = broker.xrange(topic("graves"))
            return any(expired.encode() in fields[b"data"] for _, fields in entries)

        wait_until(dead_lettered, timeout=20)
    for marker in (minute, seconds, unread):
        wait_until(lambda m=marker: bool(answers_app.calls("/answer/ttl", m)), timeout=20)
    assert answers_app.calls("/answer/ttl", expired) == []
    assert answers_app.calls("/answer/graves", expired) == []

    def expiration(marker: str) -> datetime | None:
        (call,) = answers_app.calls("/answer/ttl", marker)
        value = json.loads(call["body"]).get("expiration")
        return datetime.fromisoformat(value) if value else None

    for marker, ttl in ((minute, 60), (seconds, 90)):
        expires = expiration(marker)
        assert expires is not None
        assert before + timedelta(seconds=ttl - 2) <= expires
        assert expires <= datetime.now(UTC) + timedelta(seconds=ttl)
    assert expiration(unread) is None


# --- Forwarding headers on the hop between sidecars (direct_messaging.go) --------------------


def test_the_hop_to_another_app_adds_daprds_forwarding_headers(
    target: Sidecar, hop_caller: Sidecar, answers_app: AnswersApp
) -> None:
    """The caller's sidecar names its host (DAPR_HOST_IP here) and namespace ("default"
    without NAMESPACE), after the caller's own X-Forwarded-For; an app invoking itself gets
    none of them."""
    marker = unique("hop")
    for car in (hop_caller, target):
        answer = httpx.post(
            f"{car.http}/v1.0/invoke/{APP_ID}/method/answer/echo",
            content=f"{marker}-{car.app_id}".encode(),
            headers={"X-Forwarded-For": "203.0.113.9"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
    (hop,) = answers_app.calls("/answer/echo", f"{marker}-{hop_caller.app_id}")
    host = socket.gethostname()
    assert headers_named(hop, "x-forwarded-for") == ["203.0.113.9", HOST_IP]
    assert headers_named(hop, "x-forwarded-host") == [host]
    assert headers_named(hop, "forwarded") == [f"for={HOST_IP};by={HOST_IP};host={host}"]
    assert headers_named(hop, "dapr-caller-namespace") == ["default"]
    (local,) = answers_app.calls("/answer/echo", f"{marker}-{target.app_id}")
    assert headers_named(local, "x-forwarded-for") == ["203.0.113.9"]
    for name in ("x-forwarded-host", "forwarded", "dapr-caller-namespace"):
        assert headers_named(local, name) == []
