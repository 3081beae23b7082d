"""An outbox transaction whose event cannot be published fails as daprd's does, storing nothing.

daprd publishes the internal message before it commits, so a broker that is down fails the call
with ERR_PUBLISH_OUTBOX and the state is not written. The direct path (store and pubsub on one
Redis) must fail the same way when that Redis is down, and the relay path when only the broker is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation

from tests.conftest import RedisServer
from tests.procs import free_port
from tests.sidecar.api.conftest import Sidecar, component, unique, upsert_in_transaction


@pytest.fixture(scope="module")
def broker(workdir: Path) -> Iterator[RedisServer]:
    """The Redis killed by the test: the pubsub's, and the direct store's."""
    server = RedisServer(free_port(), workdir / "outbox-broker")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sidecar(
    workdir: Path, registry: Path, redis_server: RedisServer, broker: RedisServer
) -> Iterator[Sidecar]:
    folder = workdir / "outbox-error-resources"
    folder.mkdir()
    outbox = {"outboxPublishPubsub": "pubsub", "outboxPublishTopic": "events"}
    docs = [
        component("direct", "state.redis", {"redisHost": broker.host, **outbox}),
        component("relayed", "state.redis", {"redisHost": redis_server.host, **outbox}),
        component(
            "orphan",
            "state.redis",
            {"redisHost": redis_server.host, **outbox, "outboxPubsub": "nosuchpubsub"},
        ),
        component("pubsub", "pubsub.redis", {"redisHost": broker.host}),
    ]
    (folder / "c.yaml").write_text("\n---\n".join(docs))
    car = Sidecar("outbox-errors", folder, registry, log_dir=workdir).start()
    yield car
    car.stop()


@pytest.mark.parametrize("store", ["direct", "relayed"])
def test_a_broker_that_is_down_fails_the_transaction_with_the_outbox_error(
    sidecar: Sidecar, broker: RedisServer, sdk_http_port: int, store: str
) -> None:
    broker.kill9()
    try:
        key = unique(store)
        answer = upsert_in_transaction(sidecar, store, key)
        assert answer.status_code == 500, answer.text
        assert answer.json()["errorCode"] == "ERR_PUBLISH_OUTBOX"
        with DaprClient(address=sidecar.grpc_address) as client:
            with pytest.raises(DaprGrpcError) as raised:
                client.execute_state_transaction(
                    store, [TransactionalStateOperation(key=key, data=b"1")]
                )
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert "error while publishing outbox message" in (raised.value.details() or "")
    finally:
        broker.restart()
    # Nothing was stored: the relayed store's Redis stayed up, and had the write been made the
    # event would have been lost.
    read = httpx.get(f"{sidecar.http}/v1.0/state/{store}/{key}", timeout=30)
    assert read.status_code == 204, read.text


def test_an_outbox_whose_pubsub_is_not_loaded_fails_and_stores_nothing(sidecar: Sidecar) -> None:
    """As when the outbox's pubsub is scoped to another app: daprd's internal publish finds
    no such pubsub, before anything is committed."""
    key = unique("orphan")
    answer = upsert_in_transaction(sidecar, "orphan", key)
    assert answer.status_code == 500, answer.text
    assert answer.json()["errorCode"] == "ERR_PUBLISH_OUTBOX"
    assert answer.json()["message"] == (
        "error while publishing outbox message: pubsub 'nosuchpubsub' not found"
    )
    read = httpx.get(f"{sidecar.http}/v1.0/state/orphan/{key}", timeout=30)
    assert read.status_code == 204, read.text
