"""How a real sidecar loads a real app's ``GET /dapr/subscribe``, and what it starts when that
fails, as daprd 1.18 does: the request runs under the built-in DaprBuiltInInitializationRetries
policy (or a Resiliency policy of that name); when it still fails (no answer, an answer that does
not decode, a routing rule that is not CEL) none of the app's subscriptions start, declarative
ones neither, and the sidecar serves on; with app health checks the declarative ones start once
the app is healthy again. A topic named twice is the app's, and of the app's own the last one."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.procs import ManagedProcess, wait_until
from tests.sidecar.api.conftest import Sidecar, TinyApp, component, unique

TAG = os.urandom(3).hex()
DECLARED = f"declared-{TAG}"  #: the declarative subscription's topic in most tests
PROGRAMMATIC = f"programmatic-{TAG}"  #: the app's own topic
SHARED = f"shared-{TAG}"  #: named by a declarative subscription and by the app
TWICE = f"twice-{TAG}"  #: named twice by the app
DOUBLE = f"double-{TAG}"  #: named by two declarative subscriptions
#: Each first GET /dapr/subscribe and daprd's 3 built-in retries.
BUILT_IN_ATTEMPTS = 4

APP_SUBSCRIPTIONS = [{"pubsubname": "pubsub", "topic": PROGRAMMATIC, "route": "/events/app"}]
BAD_CEL = [
    *APP_SUBSCRIPTIONS,
    {
        "pubsubname": "pubsub",
        "topic": f"rules-{TAG}",
        "routes": {"rules": [{"match": "event.type ==", "path": "/events/rule"}]},
    },
]
#: Answers daprd cannot use: each fails the whole of the app's subscriptions.
UNUSABLE = {
    "wrong-type": json.dumps([{"pubsubname": "pubsub", "topic": 5, "route": "/events/x"}]),
    "not-json": '[{"pubsubname": "pubsub", ',
    "bad-cel": json.dumps(BAD_CEL),
}
HEALTH_FLAGS = (
    "--enable-app-health-check",
    "--app-health-probe-interval",
    "1",
    "--app-health-threshold",
    "1",
)


def subscription(name: str, topic: str, path: str) -> str:
    return (
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\n"
        f"metadata:\n  name: {name}\nspec:\n  pubsubname: pubsub\n  topic: {topic}\n"
        f"  routes:\n    default: {path}\n"
    )


def write_resources(
    folder: Path,
    redis_server: RedisServer,
    declared: Mapping[str, tuple[str, str]],
    *,
    pubsub: bool = True,
    extra: str = "",
) -> Path:
    """A state store, the pubsub (unless ``pubsub`` is false), one file per declarative
    subscription (file stem -> topic, path) and ``extra`` documents."""
    folder.mkdir()
    docs = [component("memstore", "state.in-memory")]
    if pubsub:
        docs.append(component("pubsub", "pubsub.redis", {"redisHost": redis_server.host}))
    (folder / "components.yaml").write_text("\n---\n".join(docs))
    for stem, (topic, path) in declared.items():
        (folder / f"{stem}.yaml").write_text(subscription(stem, topic, path))
    if extra:
        (folder / "extra.yaml").write_text(extra)
    return folder


@pytest.fixture(scope="module")
def declared(workdir: Path, redis_server: RedisServer) -> Path:
    """The pubsub and a declarative subscription to DECLARED."""
    return write_resources(
        workdir / "subscribe-resources", redis_server, {"declared": (DECLARED, "/events/declared")}
    )


class Launcher:
    """Starts apps and sidecars for one test and stops them all at its end."""

    def __init__(self, workdir: Path, registry: Path) -> None:
        self.workdir = workdir
        self.registry = registry
        self.procs: list[ManagedProcess] = []

    def app(self, subscriptions: list[dict[str, Any]] | None = None, **kwargs: Any) -> TinyApp:
        app = TinyApp(subscriptions, self.workdir, **kwargs)
        self.procs.append(app.proc)
        return app.start()

    def sidecar(self, resources: Path, app: TinyApp, flags: tuple[str, ...] = ()) -> Sidecar:
        car = Sidecar(
            unique("subscriber"),
            resources,
            self.registry,
            app_port=app.port,
            log_dir=self.workdir,
            flags=flags,
        )
        self.procs.append(car.proc)
        return car.start()


@pytest.fixture()
def launch(workdir: Path, registry: Path) -> Iterator[Launcher]:
    launcher = Launcher(workdir, registry)
    yield launcher
    for proc in reversed(launcher.procs):
        proc.stop()


def groups(redis_server: RedisServer, topic: str) -> set[str]:
    """The consumer groups on ``topic``'s stream: a sidecar subscribing creates its app id's."""
    with redis.Redis(port=redis_server.port) as broker:
        try:
            found: Any = broker.xinfo_groups(topic)
        except redis.ResponseError:  # no stream: nobody subscribed or published
            return set()
    return {g["name"].decode() for g in found}


def listed(car: Sidecar) -> list[tuple[str, str, list[str]]]:
    """The metadata API's subscriptions: topic, type and paths."""
    body = httpx.get(f"{car.http}/v1.0/metadata", timeout=10).json()
    return [
        (s["topic"], s["type"], [r["path"] for r in s.get("rules", [])])
        for s in body.get("subscriptions", [])
    ]


def publish(car: Sidecar, topic: str, marker: str) -> None:
    answer = httpx.post(f"{car.http}/v1.0/publish/pubsub/{topic}", json={"m": marker}, timeout=10)
    assert answer.status_code == 204, answer.text


def paths_of(app: TinyApp, marker: str) -> list[str]:
    return [r["path"] for r in app.received() if r["event"].get("data", {}).get("m") == marker]


def assert_serving(car: Sidecar) -> None:
    """The sidecar runs on: healthy, and its state API works."""
    car.proc.check_alive()
    assert httpx.get(f"{car.http}/v1.0/healthz", timeout=10).status_code == 204
    url = f"{car.http}/v1.0/state/memstore"
    saved = httpx.post(url, json=[{"key": "k", "value": "v"}], timeout=10)
    assert saved.status_code == 204, saved.text
    assert httpx.get(f"{url}/k", timeout=10).json() == "v"


def test_no_answer_is_retried_then_nothing_starts_and_the_sidecar_serves_on(
    launch: Launcher, declared: Path, redis_server: RedisServer
) -> None:
    app = launch.app(APP_SUBSCRIPTIONS, garbled="all")
    car = launch.sidecar(declared, app)  # ready once it gave up

    calls = app.subscribe_calls()
    assert len(calls) == BUILT_IN_ATTEMPTS
    assert {c.get("dapr-app-id") for c in calls} == {car.app_id}
    assert {c.get("content-type") for c in calls} == {"application/json"}
    assert car.app_id not in groups(redis_server, DECLARED)
    assert listed(car) == [(DECLARED, "DECLARATIVE", ["/events/declared"])]
    assert_serving(car)


def test_an_answer_after_failed_attempts_is_used(
    launch: Launcher, declared: Path, redis_server: RedisServer
) -> None:
    app = launch.app(APP_SUBSCRIPTIONS, garbled=2)
    car = launch.sidecar(declared, app)

    assert len(app.subscribe_calls()) == 3
    marker = unique("late")
    publish(car, PROGRAMMATIC, marker)
    wait_until(lambda: paths_of(app, marker) == ["/events/app"], timeout=15)
    assert listed(car) == [
        (DECLARED, "DECLARATIVE", ["/events/declared"]),
        (PROGRAMMATIC, "PROGRAMMATIC", ["/events/app"]),
    ]


@pytest.mark.parametrize("answer", UNUSABLE)
def test_an_unusable_answer_starts_no_subscription_and_the_sidecar_serves_on(
    launch: Launcher, declared: Path, redis_server: RedisServer, answer: str
) -> None:
    app = launch.app(answer=UNUSABLE[answer])
    car = launch.sidecar(declared, app)

    assert len(app.subscribe_calls()) == 1  # an answer is not retried, whatever it holds
    assert car.app_id not in groups(redis_server, DECLARED) | groups(redis_server, PROGRAMMATIC)
    assert listed(car) == [(DECLARED, "DECLARATIVE", ["/events/declared"])]
    assert_serving(car)


def test_with_health_checks_the_declared_ones_start_when_the_app_is_healthy_again(
    launch: Launcher, declared: Path, redis_server: RedisServer
) -> None:
    app = launch.app(BAD_CEL)
    car = launch.sidecar(declared, app, HEALTH_FLAGS)
    wait_until(lambda: len(app.subscribe_calls()) == 1, timeout=15)  # at the first probe
    marker = unique("after-recovery")
    publish(car, DECLARED, marker)
    invoke = f"{car.http}/v1.0/invoke/{car.app_id}/method/ping"
    wait_until(lambda: httpx.get(invoke, timeout=10).status_code == 200, timeout=15)

    httpx.post(f"http://127.0.0.1:{app.port}/health/down", timeout=5).raise_for_status()
    wait_until(lambda: httpx.get(invoke, timeout=10).status_code == 500, timeout=15)
    assert paths_of(app, marker) == []
    httpx.post(f"http://127.0.0.1:{app.port}/health/up", timeout=5).raise_for_status()

    wait_until(lambda: paths_of(app, marker) == ["/events/declared"], timeout=20)
    assert len(app.subscribe_calls()) == 1  # daprd asks the app once
    assert listed(car) == [(DECLARED, "DECLARATIVE", ["/events/declared"])]


def init_policy_resources(
    folder: Path, redis_server: RedisServer, duration: str, retries: int
) -> Path:
    """One declarative subscription, and a constant DaprBuiltInInitializationRetries policy."""
    policy = (
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: init\nspec:\n"
        "  policies:\n    retries:\n      DaprBuiltInInitializationRetries:\n"
        f"        policy: constant\n        duration: {duration}\n"
        f"        maxRetries: {retries}\n"
    )
    declared = {"declared": (DECLARED, "/events/declared")}
    return write_resources(folder, redis_server, declared, extra=policy)


def test_attempts_while_the_app_is_unhealthy_do_not_reach_it(
    launch: Launcher, workdir: Path, redis_server: RedisServer
) -> None:
    # daprd's app channel fails a call to an unhealthy app at once; the retries go on.
    folder = init_policy_resources(workdir / "unhealthy-init-resources", redis_server, "3s", 3)
    app = launch.app(APP_SUBSCRIPTIONS, garbled="all")
    car = launch.sidecar(folder, app, HEALTH_FLAGS)
    wait_until(lambda: len(app.subscribe_calls()) == 1, timeout=15)  # at the first probe
    httpx.post(f"http://127.0.0.1:{app.port}/health/down", timeout=5).raise_for_status()

    wait_until(lambda: "failed to subscribe to topics" in car.proc.log_tail(), timeout=20)
    assert len(app.subscribe_calls()) == 1  # the 3 retries, 3 s apart, found it unhealthy
    unhealthy = "rpc error: code = Internal desc = app is not in a healthy state"
    assert f"failed to subscribe to topics: {unhealthy}" in car.proc.log_tail()
    assert_serving(car)


def test_the_app_wins_a_declared_topic_and_its_last_subscription_wins_its_own(
    launch: Launcher, workdir: Path, redis_server: RedisServer
) -> None:
    folder = write_resources(
        workdir / "overlap-resources",
        redis_server,
        {
            "a-shared": (SHARED, "/events/declared-shared"),
            "b-double": (DOUBLE, "/events/double-first"),
            "c-double": (DOUBLE, "/events/double-second"),
        },
    )
    app = launch.app(
        [
            {"pubsubname": "pubsub", "topic": TWICE, "route": "/events/twice-first"},
            {"pubsubname": "pubsub", "topic": SHARED, "route": "/events/app-shared"},
            {"pubsubname": "pubsub", "topic": TWICE, "route": "/events/twice-second"},
        ]
    )
    car = launch.sidecar(folder, app)

    assert listed(car) == [
        (SHARED, "PROGRAMMATIC", ["/events/app-shared"]),
        (DOUBLE, "DECLARATIVE", ["/events/double-first"]),
        (TWICE, "PROGRAMMATIC", ["/events/twice-second"]),
    ]
    expected = {
        SHARED: "/events/app-shared",
        DOUBLE: "/events/double-first",
        TWICE: "/events/twice-second",
    }
    markers = {topic: unique("overlap") for topic in expected}
    for topic, marker in markers.items():
        publish(car, topic, marker)
    for topic, path in expected.items():
        wait_until(lambda m=markers[topic], p=path: paths_of(app, m) == [p], timeout=15)


def test_a_declared_name_given_twice_is_the_last_one_placed_last(
    launch: Launcher, workdir: Path, redis_server: RedisServer
) -> None:
    # daprd's component store keeps one subscription per name: the later replaces the earlier
    # and goes to the end, behind another subscription to its topic.
    first, second = f"renamed-first-{TAG}", f"renamed-second-{TAG}"
    folder = write_resources(workdir / "same-name-resources", redis_server, {})
    (folder / "a.yaml").write_text(subscription("orders", first, "/events/orders-first"))
    (folder / "b.yaml").write_text(subscription("other", second, "/events/other"))
    (folder / "c.yaml").write_text(subscription("orders", second, "/events/orders-last"))
    app = launch.app()
    car = launch.sidecar(folder, app)

    assert listed(car) == [(second, "DECLARATIVE", ["/events/other"])]
    markers = {topic: unique("renamed") for topic in (first, second)}
    for topic, marker in markers.items():
        publish(car, topic, marker)
    wait_until(lambda: paths_of(app, markers[second]) == ["/events/other"], timeout=15)
    assert car.app_id not in groups(redis_server, first)
    assert paths_of(app, markers[first]) == []


def test_without_a_pubsub_the_app_is_not_asked(
    launch: Launcher, workdir: Path, redis_server: RedisServer
) -> None:
    folder = write_resources(workdir / "no-pubsub-resources", redis_server, {}, pubsub=False)
    app = launch.app(APP_SUBSCRIPTIONS)
    car = launch.sidecar(folder, app)

    assert app.subscribe_calls() == []
    assert listed(car) == []
    assert_serving(car)


def test_a_resiliency_policy_of_the_built_in_name_replaces_it(
    launch: Launcher, workdir: Path, redis_server: RedisServer
) -> None:
    folder = init_policy_resources(workdir / "init-policy-resources", redis_server, "10ms", 5)
    app = launch.app(APP_SUBSCRIPTIONS, garbled="all")
    car = launch.sidecar(folder, app)

    assert len(app.subscribe_calls()) == 6
    assert car.app_id not in groups(redis_server, DECLARED)
    assert_serving(car)
