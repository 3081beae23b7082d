"""Outbound component resiliency (``targets.components.<name>.outbound``) with Redis stopped
for real: a save, a publish and a bulk publish retried by the policy outlast the outage; a store
without a policy fails at once; an etag conflict is not retried (counted on Redis itself); a
component a target names for inbound policies only gets no default outbound one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from tests.conftest import RedisServer
from tests.procs import wait_until
from tests.sidecar.api.conftest import Sidecar, component, upsert_in_transaction

RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: outbound
spec:
  policies:
    retries:
      patient:
        policy: constant
        duration: 200ms
        maxRetries: 50
    circuitBreakers:
      twice:
        trip: consecutiveFailures >= 2
        timeout: 60s
  targets:
    components:
      statestore:
        outbound:
          retry: patient
      breakerstore:
        outbound:
          circuitBreaker: twice
      pubsub:
        outbound:
          retry: patient
"""


@pytest.fixture()
def car(
    own_redis: RedisServer, redis_server: RedisServer, workdir: Path, registry: Path
) -> Iterator[Sidecar]:
    folder = workdir / f"outbound-{own_redis.port}"
    folder.mkdir()
    docs = [
        component("statestore", "state.redis", {"redisHost": own_redis.host}),
        component("plainstore", "state.redis", {"redisHost": own_redis.host, "redisDB": "1"}),
        component("breakerstore", "state.redis", {"redisHost": own_redis.host, "redisDB": "2"}),
        component("pubsub", "pubsub.redis", {"redisHost": own_redis.host}),
        component("plainpubsub", "pubsub.redis", {"redisHost": own_redis.host}),
        # Outboxes whose store is on the suite's Redis and whose pubsub on the one stopped
        # here: they take daprd's long way (internal topic, marker, relay).
        component(
            "outboxstore",
            "state.redis",
            {
                "redisHost": redis_server.host,
                "redisDB": "4",
                "outboxPublishPubsub": "pubsub",
                "outboxPublishTopic": "outboxed",
            },
        ),
        component(
            "plainoutbox",
            "state.redis",
            {
                "redisHost": redis_server.host,
                "redisDB": "4",
                "outboxPublishPubsub": "plainpubsub",
                "outboxPublishTopic": "outboxed",
            },
        ),
    ]
    (folder / "components.yaml").write_text("\n---\n".join(docs))
    (folder / "resiliency.yaml").write_text(RESILIENCY)
    started = Sidecar("outbound-app", folder, registry, log_dir=workdir).start()
    yield started
    started.stop()


def save(car: Sidecar, store: str, key: str, value: object, etag: str = "") -> httpx.Response:
    item: dict[str, object] = {"key": key, "value": value}
    if etag:
        item["etag"] = etag
    return httpx.post(f"{car.http}/v1.0/state/{store}", json=[item], timeout=30)


def during_outage(redis_server: RedisServer, call: object) -> httpx.Response:
    """Run ``call`` in a thread while Redis is stopped; start Redis again after a second."""
    assert callable(call)
    answers: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answers.append(call()))
    caller.start()
    caller.join(timeout=1.0)  # the outage lasts this long (or less, if the call gave up)
    redis_server.restart()
    caller.join(timeout=30)
    assert answers, "the call did not return"
    return answers[0]


def test_a_save_outlasts_a_redis_outage_under_the_stores_policy(
    car: Sidecar, own_redis: RedisServer
) -> None:
    assert save(car, "statestore", "k", {"n": 0}).status_code == 204
    own_redis.stop()
    plain = save(car, "plainstore", "k", {"n": 1})  # no policy: one attempt
    assert plain.status_code == 500 and plain.json()["errorCode"] == "ERR_STATE_SAVE"
    answer = during_outage(own_redis, lambda: save(car, "statestore", "k", {"n": 2}))
    assert answer.status_code == 204, answer.text
    stored = httpx.get(f"{car.http}/v1.0/state/statestore/k", timeout=10)
    assert stored.json() == {"n": 2}


def save_many(car: Sidecar, store: str, *items: tuple[str, object, str]) -> httpx.Response:
    body = [{"key": k, "value": v, **({"etag": e} if e else {})} for k, v, e in items]
    return httpx.post(f"{car.http}/v1.0/state/{store}", json=body, timeout=30)


def test_a_multi_item_save_outlasts_a_redis_outage_under_the_stores_policy(
    car: Sidecar, own_redis: RedisServer
) -> None:
    own_redis.stop()
    items = [("m1", 1, ""), ("m2", 2, ""), ("m3", 3, "")]
    answer = during_outage(own_redis, lambda: save_many(car, "statestore", *items))
    assert answer.status_code == 204, answer.text
    got = httpx.post(
        f"{car.http}/v1.0/state/statestore/bulk", json={"keys": ["m1", "m2", "m3"]}, timeout=10
    )
    assert [item["data"] for item in got.json()] == [1, 2, 3]


def test_a_multi_item_save_counts_once_per_round_on_the_breaker(
    car: Sidecar, own_redis: RedisServer
) -> None:
    """daprd's PerformBulkStoreOperation runs all items of a round as one attempt of the
    policy: three items failing together are one failure for the breaker, not three."""
    items = [("b1", 1, ""), ("b2", 2, ""), ("b3", 3, "")]
    own_redis.stop()
    failed = save_many(car, "breakerstore", *items)
    assert failed.status_code == 500 and failed.json()["errorCode"] == "ERR_STATE_SAVE"
    own_redis.restart()
    assert save(car, "breakerstore", "b1", 1).status_code == 204  # one failure: still closed
    own_redis.stop()
    assert save_many(car, "breakerstore", *items).status_code == 500
    assert save_many(car, "breakerstore", *items).status_code == 500  # the breaker opens
    own_redis.restart()
    refused = save(car, "breakerstore", "b1", 1)
    assert refused.status_code == 500, refused.text
    assert "circuit breaker is open" in refused.json()["message"]


def test_a_publish_outlasts_a_redis_outage_under_the_pubsubs_policy(
    car: Sidecar, own_redis: RedisServer
) -> None:
    own_redis.stop()
    answer = during_outage(
        own_redis,
        lambda: httpx.post(f"{car.http}/v1.0/publish/pubsub/orders", json={"n": 1}, timeout=30),
    )
    assert answer.status_code == 204, answer.text
    broker = redis.Redis(port=own_redis.port)
    try:
        assert broker.xlen("orders") == 1
    finally:
        broker.close()


def test_a_bulk_publish_outlasts_a_redis_outage_under_the_pubsubs_policy(
    car: Sidecar, own_redis: RedisServer
) -> None:
    entries = [{"entryId": "1", "event": {"n": 1}, "contentType": "application/json"}]
    entries += [{"entryId": "2", "event": "two", "contentType": "text/plain"}]
    url = f"{car.http}/v1.0-alpha1/publish/bulk/pubsub/bulk-orders"
    own_redis.stop()
    answer = during_outage(own_redis, lambda: httpx.post(url, json=entries, timeout=30))
    assert answer.status_code == 204, answer.text
    broker = redis.Redis(port=own_redis.port)
    try:
        assert broker.xlen("bulk-orders") == 2
    finally:
        broker.close()


def test_an_outbox_transaction_outlasts_a_redis_outage_under_the_pubsubs_policy(
    car: Sidecar, own_redis: RedisServer
) -> None:
    """daprd's outbox publishes its internal message (before the commit) and the event (after
    it) through the publisher, under the pubsub's outbound policy."""
    own_redis.stop()
    plain = upsert_in_transaction(car, "plainoutbox", "unannounced")  # no policy: one attempt
    assert plain.status_code == 500 and plain.json()["errorCode"] == "ERR_PUBLISH_OUTBOX"
    answer = during_outage(own_redis, lambda: upsert_in_transaction(car, "outboxstore", "kept"))
    assert answer.status_code == 204, answer.text
    broker = redis.Redis(port=own_redis.port)
    try:
        wait_until(lambda: broker.exists("outboxed") and broker.xlen("outboxed") == 1)
        [(_, fields)] = broker.xrange("outboxed")
        # A decoded value without a JSON content type: daprd's outbox publishes its %v.
        assert orjson.loads(fields[b"data"])["data"] == "kept"
    finally:
        broker.close()


def test_an_etag_conflict_is_not_retried(car: Sidecar, own_redis: RedisServer) -> None:
    assert save(car, "statestore", "e", "v1").status_code == 204
    broker = redis.Redis(port=own_redis.port)
    try:

        def writes() -> int:
            stats = broker.info("commandstats")
            return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))

        before = writes()
        conflict = save(car, "statestore", "e", "v2", etag="999")
        assert conflict.status_code == 409 and conflict.json()["errorCode"] == "ERR_STATE_SAVE"
        assert writes() - before == 1  # one attempt, not fifty-one
    finally:
        broker.close()


DEFAULTS_RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: defaults
spec:
  policies:
    retries:
      DefaultComponentOutboundRetryPolicy:
        policy: constant
        duration: 200ms
        maxRetries: 50
      deliveries:
        policy: constant
        duration: 1s
        maxRetries: 3
    timeouts:
      DefaultComponentOutboundTimeoutPolicy: 0s
  targets:
    components:
      events:
        inbound:
          retry: deliveries
"""


@pytest.fixture()
def defaults_car(own_redis: RedisServer, workdir: Path, registry: Path) -> Iterator[Sidecar]:
    folder = workdir / f"outbound-defaults-{own_redis.port}"
    folder.mkdir()
    docs = [
        component("anystore", "state.redis", {"redisHost": own_redis.host}),
        component("events", "pubsub.redis", {"redisHost": own_redis.host}),
    ]
    (folder / "components.yaml").write_text("\n---\n".join(docs))
    (folder / "resiliency.yaml").write_text(DEFAULTS_RESILIENCY)
    started = Sidecar("outbound-defaults-app", folder, registry, log_dir=workdir).start()
    yield started
    started.stop()


def test_a_component_named_with_inbound_policies_only_gets_no_default_outbound_policy(
    defaults_car: Sidecar, own_redis: RedisServer
) -> None:
    """daprd's ComponentOutboundPolicy: the Default*Outbound* policies are for components
    that no target names; a pubsub named for its deliveries publishes with no policy."""
    own_redis.stop()
    publish = during_outage(
        own_redis,
        lambda: httpx.post(f"{defaults_car.http}/v1.0/publish/events/t", json={}, timeout=30),
    )
    assert publish.status_code == 500, publish.text
    assert publish.json()["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    own_redis.stop()
    saved = during_outage(own_redis, lambda: save(defaults_car, "anystore", "k", 1))
    assert saved.status_code == 204, saved.text  # unnamed: DefaultComponentOutboundRetryPolicy


def test_a_timeout_of_zero_bounds_nothing(defaults_car: Sidecar) -> None:
    """daprd's policy runner applies a timeout only when it is above zero (policy.go)."""
    assert save(defaults_car, "anystore", "zero", 1).status_code == 204
    stored = httpx.get(f"{defaults_car.http}/v1.0/state/anystore/zero", timeout=10)
    assert stored.json() == 1


def resiliency_document(name: str, body: str) -> str:
    return f"apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: {name}\n{body}"


@pytest.fixture()
def skipping_car(own_redis: RedisServer, workdir: Path, registry: Path) -> Iterator[Sidecar]:
    """Three Resiliency files: one daprd cannot parse, one it loads, one whose policies it
    cannot read; each targets its own store."""
    folder = workdir / f"outbound-skipping-{own_redis.port}"
    folder.mkdir()
    docs = [
        component(f"store{n}", "state.redis", {"redisHost": own_redis.host, "redisDB": str(n)})
        for n in (1, 2, 3)
    ]
    (folder / "components.yaml").write_text("\n---\n".join(docs))
    retry = "    retries:\n      patient: {policy: constant, duration: 200ms, maxRetries: %s}\n"
    target = "  targets:\n    components:\n      store%d:\n        outbound: {retry: patient}\n"
    (folder / "a-unparsable.yaml").write_text(
        resiliency_document("unparsable", "spec:\n  policies:\n" + retry % '"many"' + target % 1)
    )
    (folder / "b-good.yaml").write_text(
        resiliency_document("good", "spec:\n  policies:\n" + retry % 50 + target % 2)
    )
    (folder / "c-unreadable.yaml").write_text(
        resiliency_document(
            "unreadable",
            "spec:\n  policies:\n    timeouts: {later: soon}\n" + retry % 50 + target % 3,
        )
    )
    started = Sidecar("outbound-skipping-app", folder, registry, log_dir=workdir).start()
    yield started
    started.stop()


def test_resiliency_documents_daprd_cannot_read_are_skipped_and_the_sidecar_starts(
    skipping_car: Sidecar, own_redis: RedisServer
) -> None:
    """daprd logs and skips a document it cannot parse (LoadLocalResiliency) and one whose
    policies it cannot decode (FromConfigurations); the others apply."""
    own_redis.stop()
    for store in ("store1", "store3"):  # their documents' targets never applied: one attempt
        failed = save(skipping_car, store, "k", 1)
        assert failed.status_code == 500 and failed.json()["errorCode"] == "ERR_STATE_SAVE"
    answer = during_outage(own_redis, lambda: save(skipping_car, "store2", "k", 1))
    assert answer.status_code == 204, answer.text
    log = skipping_car.proc.log_path.read_text()
    assert "Could not parse resiliency file a-unparsable.yaml: error unmarshaling JSON" in log
    assert "Could not read resiliency policy unreadable: invalid duration" in log
