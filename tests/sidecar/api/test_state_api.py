"""The State API of a real sidecar, through raw HTTP and the official SDK (gRPC), per store."""

from __future__ import annotations

import httpx
import pytest
from dapr.aio.clients import DaprClient as AsyncDaprClient
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType

from tests.sidecar.api.conftest import Sidecar, unique

STORES = ["redisstore", "sqlitestore", "memstore"]


@pytest.fixture(scope="module")
def http(sidecar: Sidecar) -> httpx.Client:
    with httpx.Client(base_url=sidecar.http, timeout=10) as client:
        yield client


@pytest.fixture()
def client(sidecar: Sidecar, sdk_http_port: int) -> DaprClient:
    with DaprClient(address=sidecar.grpc_address) as dapr:
        yield dapr


@pytest.mark.parametrize("store", STORES)
def test_http_save_get_delete(http: httpx.Client, store: str) -> None:
    key = unique("k")
    saved = http.post(f"/v1.0/state/{store}", json=[{"key": key, "value": {"b": 2, "a": 1}}])
    assert saved.status_code == 204, saved.text
    got = http.get(f"/v1.0/state/{store}/{key}")
    assert got.status_code == 200
    assert got.json() == {"a": 1, "b": 2}
    etag = got.headers["etag"]
    assert etag

    stale = http.post(f"/v1.0/state/{store}", json=[{"key": key, "value": 3, "etag": "9999"}])
    assert stale.status_code in (409, 400), stale.text
    assert stale.json()["errorCode"] == "ERR_STATE_SAVE"

    deleted = http.delete(f"/v1.0/state/{store}/{key}", headers={"If-Match": etag})
    assert deleted.status_code == 204, deleted.text
    missing = http.get(f"/v1.0/state/{store}/{key}")
    assert missing.status_code == 204
    assert missing.content == b""


def test_http_wrong_etag_is_409_on_redis(http: httpx.Client) -> None:
    key = unique("k")
    http.post("/v1.0/state/redisstore", json=[{"key": key, "value": 1}])
    stale = http.post("/v1.0/state/redisstore", json=[{"key": key, "value": 2, "etag": "77"}])
    assert stale.status_code == 409
    stale_delete = http.delete(f"/v1.0/state/redisstore/{key}", headers={"If-Match": "77"})
    assert stale_delete.status_code == 409
    assert stale_delete.json()["errorCode"] == "ERR_STATE_DELETE"


def test_http_errors(http: httpx.Client) -> None:
    unknown = http.get("/v1.0/state/nosuchstore/k")
    assert unknown.status_code == 400
    assert unknown.json()["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"
    illegal = http.post("/v1.0/state/redisstore", json=[{"key": "a||b", "value": 1}])
    assert illegal.status_code == 400
    assert illegal.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    bad_json = http.post("/v1.0/state/redisstore", content=b"[{not json")
    assert bad_json.status_code == 400
    assert bad_json.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    bad_op = http.post(
        "/v1.0/state/redisstore/transaction",
        json={"operations": [{"operation": "merge", "request": {"key": "x"}}]},
    )
    assert bad_op.status_code == 400
    assert bad_op.json()["errorCode"] == "ERR_NOT_SUPPORTED_STATE_OPERATION"


@pytest.mark.parametrize("store", STORES)
def test_http_bulk_and_transaction(http: httpx.Client, store: str) -> None:
    a, b, gone = unique("a"), unique("b"), unique("gone")
    http.post(f"/v1.0/state/{store}", json=[{"key": gone, "value": "x"}])
    tx = http.post(
        f"/v1.0/state/{store}/transaction",
        json={
            "operations": [
                {"operation": "upsert", "request": {"key": a, "value": "va"}},
                {"operation": "upsert", "request": {"key": b, "value": {"n": 1}}},
                {"operation": "delete", "request": {"key": gone}},
            ]
        },
    )
    assert tx.status_code == 204, tx.text
    bulk = http.post(f"/v1.0/state/{store}/bulk", json={"keys": [a, b, gone]})
    assert bulk.status_code == 200
    items = {item["key"]: item for item in bulk.json()}
    assert items[a]["data"] == "va"
    assert items[b]["data"] == {"n": 1}
    assert items[a]["etag"]
    assert items[gone] == {"key": gone}


@pytest.mark.parametrize("store", STORES)
def test_grpc_state_through_sdk(client: DaprClient, store: str) -> None:
    key = unique("g")
    client.save_state(store, key, b"\x00binary")
    got = client.get_state(store, key)
    assert got.data == b"\x00binary"
    assert got.etag
    missing = client.get_state(store, unique("missing"))
    assert missing.data == b""
    assert missing.etag == ""

    with pytest.raises(DaprGrpcError) as conflict:
        client.save_state(store, key, b"new", etag="12345")
    assert conflict.value.code().name == "ABORTED"

    client.execute_state_transaction(
        store,
        [
            TransactionalStateOperation(key=key, data=b"tx", etag=got.etag),
            TransactionalStateOperation(
                key=unique("other"), data=b"", operation_type=TransactionOperationType.delete
            ),
        ],
    )
    assert client.get_state(store, key).data == b"tx"
    client.delete_state(store, key)
    assert client.get_state(store, key).data == b""


def test_grpc_errors(client: DaprClient) -> None:
    key = unique("err")
    with pytest.raises(DaprGrpcError) as illegal:
        client.save_state("redisstore", "a||b", b"x")
    assert illegal.value.code().name == "INVALID_ARGUMENT"
    assert illegal.value.error_code() == "DAPR_STATE_ILLEGAL_KEY"

    with pytest.raises(DaprGrpcError) as unknown:
        client.get_state("nosuchstore", "k")
    assert unknown.value.code().name == "INVALID_ARGUMENT"
    assert "nosuchstore" in (unknown.value.details() or "")

    with pytest.raises(DaprGrpcError) as failed_tx:
        client.execute_state_transaction(
            "sqlitestore", [TransactionalStateOperation(key=key, data=b"x", etag="424242")]
        )
    assert failed_tx.value.code().name == "INTERNAL"


async def test_async_sdk_client(sidecar: Sidecar, sdk_http_port: int) -> None:
    async with AsyncDaprClient(address=sidecar.grpc_address) as dapr:
        key = unique("aio")
        await dapr.save_state("memstore", key, "hello")
        got = await dapr.get_state("memstore", key)
        assert got.data == b"hello"
        states = await dapr.get_bulk_state("memstore", [key, unique("none")])
        assert [s.data for s in states.items] == [b"hello", b""]
