"""The State API of a real sidecar per store type, through raw HTTP, the sync and the aio SDK.

Every test runs once per transport (fixture ``api``) and store (``store``); the answers, errors
included, are daprd's for that transport (contract section 3).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import grpc
import httpx
import pytest
import redis
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2

from tests.procs import raw_get
from tests.sidecar.api.conformance import (
    APP_ID,
    BACKENDS,
    PREFIXES,
    STORES,
    Conformance,
    prefix_store,
)
from tests.sidecar.api.conftest import unique
from tests.sidecar.api.transports import Api, Op, fails

#: Stores whose etags are numbers (a non-number is malformed, not a mismatch).
NUMERIC_ETAGS = {"redisstore", "pgstore"}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, conformance: Conformance) -> str:
    if not conformance.has(request.param):
        pytest.skip("PostgreSQL server binaries are not installed")
    name: str = request.param
    return name


async def test_save_get_delete(api: Api, store: str) -> None:
    key = unique("k")
    await api.save(store, key, {"b": 2, "a": 1})
    found = await api.get(store, key)
    assert found is not None and found.json() == {"a": 1, "b": 2}
    assert found.etag
    assert await api.get(store, unique("missing")) is None  # HTTP 204 no body / gRPC empty
    await api.delete(store, key, etag=found.etag)
    assert await api.get(store, key) is None
    await api.delete(store, key)  # a missing key without etag deletes fine


async def test_bulk_get_and_multi_item_save(api: Api, store: str) -> None:
    a, b, missing, guarded = unique("a"), unique("b"), unique("none"), unique("guarded")
    await api.save_many(store, [(a, "va", None), (b, {"n": 1}, None), (guarded, 0, None)])
    items = await api.bulk_get(store, [a, missing, b])
    assert [key for key, _ in items] == [a, missing, b]
    found_a, found_none, found_b = (found for _, found in items)
    assert found_a is not None and found_a.json() == "va" and found_a.etag
    assert found_none is None
    assert found_b is not None and found_b.json() == {"n": 1}
    assert await api.bulk_get(store, []) == []
    # A multi-item save is no transaction: the good item stays though the other one failed.
    fresh = unique("fresh")
    failure = await fails(api.save_many(store, [(fresh, "ok", None), (guarded, 1, "999999")]))
    failure.expect(http=(409, "ERR_STATE_SAVE"), grpc=("ABORTED", "ERR_STATE_SAVE"))
    saved = await api.get(store, fresh)
    assert saved is not None and saved.json() == "ok"


async def test_transaction(api: Api, store: str) -> None:
    a, b, gone = unique("a"), unique("b"), unique("gone")
    await api.save(store, gone, "x")
    await api.transact(
        store, [Op("upsert", a, "va"), Op("upsert", b, {"n": 1}), Op("delete", gone)]
    )
    found_a, found_b, found_gone = (f for _, f in await api.bulk_get(store, [a, b, gone]))
    assert found_a is not None and found_a.json() == "va"
    assert found_b is not None and found_b.json() == {"n": 1}
    assert found_gone is None
    # An etag failure inside a transaction is 500 / INTERNAL; atomic except on redis.
    fresh = unique("fresh")
    failure = await fails(
        api.transact(store, [Op("upsert", fresh, 1), Op("upsert", a, "after", etag="999999")])
    )
    failure.expect(http=(500, "ERR_STATE_TRANSACTION"), grpc=("INTERNAL", "ERR_STATE_TRANSACTION"))
    unchanged = await api.get(store, a)
    assert unchanged is not None and unchanged.json() == "va"
    applied = await api.get(store, fresh)
    assert (applied is not None) is (store == "redisstore")


async def test_etags(api: Api, store: str) -> None:
    key = unique("etag")
    await api.save(store, key, 1)
    first = await api.get(store, key)
    assert first is not None
    await api.save(store, key, 2, etag=first.etag)
    second = await api.get(store, key)
    assert second is not None and second.json() == 2
    assert second.etag != first.etag
    if store == "redisstore":
        assert (first.etag, second.etag) == ("1", "2")
    elif store == "pgstore":
        assert first.etag.isdigit() and second.etag.isdigit()
    else:
        uuid.UUID(first.etag)  # a new UUID per write
    stale = await fails(api.save(store, key, 3, etag=first.etag))
    stale.expect(http=(409, "ERR_STATE_SAVE"), grpc=("ABORTED", "ERR_STATE_SAVE"))
    stale_delete = await fails(api.delete(store, key, etag=first.etag))
    stale_delete.expect(http=(409, "ERR_STATE_DELETE"), grpc=("ABORTED", "ERR_STATE_DELETE"))
    malformed = await fails(api.save(store, key, 3, etag="not-a-number"))
    if store in NUMERIC_ETAGS:
        malformed.expect(http=(400, "ERR_STATE_SAVE"), grpc=("INVALID_ARGUMENT", "ERR_STATE_SAVE"))
    else:
        malformed.expect(http=(409, "ERR_STATE_SAVE"), grpc=("ABORTED", "ERR_STATE_SAVE"))
    unchanged = await api.get(store, key)
    assert unchanged is not None and unchanged.json() == 2 and unchanged.etag == second.etag
    await api.save(store, key, 4, etag="")  # an empty etag is no etag
    await api.delete(store, key, etag="")
    assert await api.get(store, key) is None


async def test_first_write(api: Api, store: str) -> None:
    key = unique("first")
    await api.save(store, key, "one", first_write=True)  # absent: inserted
    found = await api.get(store, key)
    assert found is not None and found.json() == "one"
    again = await fails(api.save(store, key, "two", first_write=True))
    # memory/sqlite report an etag mismatch; contrib's redis and postgres a plain store error.
    if store in ("memstore", "sqlitestore"):
        again.expect(http=(409, "ERR_STATE_SAVE"), grpc=("ABORTED", "ERR_STATE_SAVE"))
    else:
        again.expect(http=(500, "ERR_STATE_SAVE"), grpc=("INTERNAL", "ERR_STATE_SAVE"))
    await api.save(store, key, "three", etag=found.etag, first_write=True)
    latest = await api.get(store, key)
    assert latest is not None and latest.json() == "three"


def expire_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def test_ttl(apis: list[Api], store: str) -> None:
    """Each transport writes with ttlInSeconds; one wait covers them all."""
    http = apis[0]
    started, keys = time.time(), {}
    for api in apis:
        expiring, far, never, cleared = (unique(f"{api.name}-{n}") for n in "efnc")
        keys[api.name] = (expiring, never, cleared)
        await api.save(store, expiring, 1, metadata={"ttlInSeconds": "1"})
        await api.save(store, cleared, 1, metadata={"ttlInSeconds": "1"})
        await api.save(store, cleared, 2)  # a later write without a TTL
        await api.save(store, far, 1, metadata={"ttlInSeconds": "3600"})
        await api.save(store, never, 1, metadata={"ttlInSeconds": "-1"})
        # The SDK's get_state does not surface state metadata: read it over HTTP, where it is
        # the header metadata.ttlExpireTime (header names are case-insensitive).
        seen = await http.get(store, far)
        assert seen is not None and seen.metadata is not None
        if store == "redisstore":  # contrib's redis store does not report the expiry
            assert "ttlexpiretime" not in seen.metadata
        else:
            assert abs(expire_time(seen.metadata["ttlexpiretime"]) - (started + 3600)) < 10
        kept = await http.get(store, never)
        assert kept is not None and kept.metadata is not None
        assert "ttlexpiretime" not in kept.metadata
        bad = await fails(api.save(store, unique("bad"), 1, metadata={"ttlInSeconds": "soon"}))
        bad.expect(http=(500, "ERR_STATE_SAVE"), grpc=("INTERNAL", "ERR_STATE_SAVE"))
        assert "soon" in bad.message
    deadline = time.monotonic() + 8
    for api in apis:
        expiring, never, cleared = keys[api.name]
        while await api.get(store, expiring) is not None:
            assert time.monotonic() < deadline, f"{api.name}: a 1 s TTL did not expire"
            await asyncio.sleep(0.1)
        assert await api.get(store, never) is not None
        # HSET keeps the key's TTL: on redis only ttlInSeconds <= 0 removes it (as in daprd).
        if store == "redisstore":
            while await api.get(store, cleared) is not None:
                assert time.monotonic() < deadline, "redis kept the TTL, the key should expire"
                await asyncio.sleep(0.1)
        else:
            assert await api.get(store, cleared) is not None


@pytest.mark.parametrize("strategy", list(PREFIXES))
@pytest.mark.parametrize("backend", BACKENDS)
async def test_key_prefix(api: Api, conformance: Conformance, backend: str, strategy: str) -> None:
    name = prefix_store(backend, strategy)
    if not conformance.has(name):
        pytest.skip("PostgreSQL server binaries are not installed")
    key = unique(f"prefix-{api.name}")
    await api.save(name, key, {"p": strategy})
    assert await conformance.stored_keys(backend, key) == {PREFIXES[strategy](name, key)}
    found = await api.get(name, key)
    assert found is not None and found.json() == {"p": strategy}
    assert [k for k, _ in await api.bulk_get(name, [key])] == [key]
    await api.transact(name, [Op("delete", key)])
    assert await conformance.stored_keys(backend, key) == set()


async def test_illegal_key(api: Api, store: str) -> None:
    calls = [
        api.save(store, "a||b", 1),
        api.get(store, "a||b"),
        api.delete(store, "a||b"),
        api.bulk_get(store, ["fine", "a||b"]),
        api.transact(store, [Op("upsert", "a||b", 1)]),
    ]
    for call in calls:
        failure = await fails(call)
        failure.expect(
            http=(400, "ERR_MALFORMED_REQUEST"),
            grpc=("INVALID_ARGUMENT", "DAPR_STATE_ILLEGAL_KEY"),
        )
        assert "a||b" in failure.message
        if failure.status:  # rich details, on both APIs
            assert failure.resource == ("state", store)
            assert failure.violations == ["a||b"]
    empty = await fails(api.save(store, "", 1))
    empty.expect(http=(400, "ERR_MALFORMED_REQUEST"), grpc=("INVALID_ARGUMENT", "ERR_STATE_SAVE"))


async def test_unknown_store(api: Api) -> None:
    calls = [
        api.get("nosuchstore", "k"),
        api.save("nosuchstore", "k", 1),
        api.delete("nosuchstore", "k"),
        api.bulk_get("nosuchstore", ["k"]),
        api.transact("nosuchstore", [Op("upsert", "k", 1)]),
    ]
    for call in calls:
        failure = await fails(call)
        failure.expect(
            http=(400, "ERR_STATE_STORE_NOT_FOUND"),
            grpc=("INVALID_ARGUMENT", "DAPR_STATE_NOT_FOUND"),
        )
        assert "state store nosuchstore is not found" in failure.message


# --- Points one transport alone can reach ------------------------------------------------------


@pytest.fixture()
def stub(conformance: Conformance) -> Iterator[dapr_pb2_grpc.DaprStub]:
    with grpc.insecure_channel(conformance.sidecar.grpc_address) as channel:
        yield dapr_pb2_grpc.DaprStub(channel)


async def test_binary_values_over_grpc(
    conformance: Conformance, conformance_sync_client: DaprClient, store: str
) -> None:
    """gRPC values are raw bytes (HTTP ones are JSON): both SDK clients round-trip them."""
    raw = bytes(range(256))
    key = unique("bin-sync")
    await asyncio.to_thread(conformance_sync_client.save_state, store, key, raw)
    assert (await asyncio.to_thread(conformance_sync_client.get_state, store, key)).data == raw
    async with AioDaprClient(address=conformance.sidecar.grpc_address) as client:
        key = unique("bin-aio")
        await client.save_state(store, key, raw)
        assert (await client.get_state(store, key)).data == raw


def test_bulk_delete_over_grpc(stub: dapr_pb2_grpc.DaprStub, store: str) -> None:
    """DeleteBulkState exists only in daprd's gRPC API; neither SDK client wraps it."""
    keys = [unique("bd") for _ in range(3)]
    items = [common_pb2.StateItem(key=k, value=b"1") for k in keys]
    stub.SaveState(state_pb2.SaveStateRequest(store_name=store, states=items), timeout=10)
    etag = stub.GetState(state_pb2.GetStateRequest(store_name=store, key=keys[0]), timeout=10).etag
    deletes = [common_pb2.StateItem(key=keys[0], etag=common_pb2.Etag(value=etag))]
    deletes += [common_pb2.StateItem(key=k) for k in keys[1:]]
    request = state_pb2.DeleteBulkStateRequest(store_name=store, states=deletes)
    stub.DeleteBulkState(request, timeout=10)
    got = stub.GetBulkState(state_pb2.GetBulkStateRequest(store_name=store, keys=keys), timeout=10)
    assert [(i.key, i.data) for i in got.items] == [(k, b"") for k in keys]

    stub.SaveState(state_pb2.SaveStateRequest(store_name=store, states=items[:1]), timeout=10)
    stale = [common_pb2.StateItem(key=keys[0], etag=common_pb2.Etag(value="999999"))]
    with pytest.raises(grpc.RpcError) as caught:
        stub.DeleteBulkState(state_pb2.DeleteBulkStateRequest(store_name=store, states=stale))
    surfaced = DaprGrpcError(caught.value)  # what an SDK user would read
    assert surfaced.code() == grpc.StatusCode.ABORTED
    assert surfaced.error_code() == "ERR_STATE_BULK_DELETE"
    assert (read_raw(stub, store, keys[0])) == b"1"


def read_raw(stub: dapr_pb2_grpc.DaprStub, store: str, key: str) -> bytes:
    got = stub.GetState(state_pb2.GetStateRequest(store_name=store, key=key), timeout=10)
    return bytes(got.data)


async def test_unknown_transaction_operation(conformance: Conformance) -> None:
    """The SDKs only send upsert/delete; over HTTP another one is 400 (gRPC: test_bad_input)."""
    async with httpx.AsyncClient(base_url=conformance.sidecar.http, timeout=10) as http:
        body = {"operations": [{"operation": "merge", "request": {"key": "x"}}]}
        response = await http.post("/v1.0/state/memstore/transaction", json=body)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "ERR_NOT_SUPPORTED_STATE_OPERATION"


@pytest.mark.parametrize("store", ["redisstore", "sqlitestore"])
async def test_http_values_are_read_as_gos_json_decoder_reads_them(
    conformance: Conformance, store: str
) -> None:
    """HTTP values are decoded and encoded again (as daprd does): lone surrogates become U+FFFD."""
    key = unique("surrogate")
    body = b'[{"key": "%s", "value": {"s": "a\\ud800", "pair": "\\ud83d\\ude00"}}]' % key.encode()
    async with httpx.AsyncClient(base_url=conformance.sidecar.http, timeout=10) as http:
        saved = await http.post(f"/v1.0/state/{store}", content=body)
        assert saved.status_code == 204, saved.text
        found = await http.get(f"/v1.0/state/{store}/{key}")
        assert found.json() == {"s": "a\ufffd", "pair": "\U0001f600"}
        bulk = await http.post(f"/v1.0/state/{store}/bulk", json={"keys": [key]})
        assert bulk.json()[0]["data"] == {"s": "a\ufffd", "pair": "\U0001f600"}


def test_http_keys_are_unescaped_after_routing_as_daprd_does(
    conformance: Conformance, conformance_sync_client: DaprClient
) -> None:
    """daprd routes on the escaped path, then unescapes each parameter (url.QueryUnescape):
    ``%2F`` is a slash inside the key, ``+`` a space, ``%2B`` a plus."""
    base = unique("esc")
    keys = {"a%2Fb": "a/b", "a+b": "a b", "a%2Bb": "a+b", "caf%C3%A9": "café"}
    for sent, key in keys.items():
        conformance_sync_client.save_state("redisstore", base + key, json.dumps({"k": key}))
        url = f"{conformance.sidecar.http}/v1.0/state/redisstore/{base}{sent}"
        found = httpx.get(url, timeout=10)
        assert found.status_code == 200 and found.json() == {"k": key}, (sent, found.text)
        assert httpx.delete(url, timeout=10).status_code == 204
        assert conformance_sync_client.get_state("redisstore", base + key).data == b""
    # A broken escape is refused before routing, as Go's HTTP server refuses the request line.
    # The path is cleaned first, as Go's path.Clean cleans it: "//", "." and a trailing slash go.
    conformance_sync_client.save_state("redisstore", base, json.dumps({"k": "clean"}))
    messy = f"//v1.0//state/./redisstore/{base}/".encode()
    status, body = raw_get(conformance.sidecar.http_port, messy)
    assert (status, json.loads(body)) == (200, {"k": "clean"})
    broken = raw_get(conformance.sidecar.http_port, b"/v1.0/state/redisstore/a%2s")
    assert broken == (400, b"400 Bad Request")


async def test_http_transaction_metadata_reaches_operations_only_from_the_query(
    conformance: Conformance,
) -> None:
    """daprd's onPostStateTransaction copies the query's ``metadata.*`` into every operation;
    the body's ``metadata`` is the transaction's only, and state.redis reads the TTL per op."""
    by_query, by_body = unique("tx-query"), unique("tx-body")

    def upsert(key: str) -> list[dict[str, object]]:
        return [{"operation": "upsert", "request": {"key": key, "value": 1}}]

    async with httpx.AsyncClient(base_url=conformance.sidecar.http, timeout=10) as http:
        query = await http.post(
            "/v1.0/state/redisstore/transaction?metadata.ttlInSeconds=60",
            json={"operations": upsert(by_query)},
        )
        body = await http.post(
            "/v1.0/state/redisstore/transaction",
            json={"metadata": {"ttlInSeconds": "60"}, "operations": upsert(by_body)},
        )
    assert (query.status_code, body.status_code) == (204, 204), (query.text, body.text)
    with redis.Redis(host="127.0.0.1", port=conformance.redis.port) as client:
        assert 0 < int(client.ttl(f"{APP_ID}||{by_query}")) <= 60
        assert int(client.ttl(f"{APP_ID}||{by_body}")) == -1  # a key without a TTL
