"""The State API through StateService on every store, with each component's own semantics."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from sidecar.errors import DaprError
from sidecar.state.base import Concurrency, DeleteRequest, SetRequest
from tests.sidecar.state.conftest import Harness

S = "statestore"


def item(key: str, value: bytes = b'"v"', **kwargs: object) -> SetRequest:
    return SetRequest(key, value, is_json=True, **kwargs)  # type: ignore[arg-type]


async def etag_of(h: Harness, key: str) -> str:
    found = await h.service.get(S, key)
    assert found is not None and found.etag
    return found.etag


async def test_set_get_delete_and_missing(harness: Harness) -> None:
    h, key = harness, harness.key()
    assert await h.service.get(S, key) is None
    await h.service.save(S, [item(key, b'{"a":1}')])
    found = await h.service.get(S, key)
    assert found is not None and found.etag
    # postgres keeps values as jsonb and answers with jsonb's text form, like daprd does.
    assert found.data == (b'{"a": 1}' if h.kind == "postgres" else b'{"a":1}')
    await h.service.delete(S, key)
    assert await h.service.get(S, key) is None
    await h.service.delete(S, key)  # deleting a missing key without etag is fine


async def test_binary_values_round_trip(harness: Harness) -> None:
    h, key = harness, harness.key()
    raw = bytes(range(256))
    await h.service.save(S, [SetRequest(key, raw)])
    found = await h.service.get(S, key)
    assert found is not None and found.data == raw


async def test_etags_change_and_guard_writes(harness: Harness) -> None:
    h, key = harness, harness.key()
    await h.service.save(S, [item(key)])
    first = await etag_of(h, key)
    if h.kind == "redis":
        assert first == "1"
    await h.service.save(S, [item(key, b'"v2"', etag=first)])
    second = await etag_of(h, key)
    assert second != first
    if h.kind == "redis":
        assert second == "2"
    with pytest.raises(DaprError) as stale:
        await h.service.save(S, [item(key, b'"v3"', etag=first)])
    assert (stale.value.error_code, stale.value.http_status) == ("ERR_STATE_SAVE", 409)
    assert stale.value.grpc_code is grpc.StatusCode.ABORTED
    assert stale.value.message.startswith(f"failed saving state in state store {S}: possible etag")
    with pytest.raises(DaprError) as bad_delete:
        await h.service.delete(S, key, first)
    assert (bad_delete.value.error_code, bad_delete.value.http_status) == ("ERR_STATE_DELETE", 409)
    assert bad_delete.value.grpc_code is grpc.StatusCode.ABORTED
    await h.service.delete(S, key, second)
    assert await h.service.get(S, key) is None


async def test_empty_etag_means_no_etag(harness: Harness) -> None:
    h, key = harness, harness.key()
    await h.service.save(S, [item(key)])
    await h.service.save(S, [item(key, b'"new"', etag="")])
    await h.service.delete(S, key, "")
    assert await h.service.get(S, key) is None


async def test_malformed_etag(harness: Harness) -> None:
    h, key = harness, harness.key()
    await h.service.save(S, [item(key)])
    with pytest.raises(DaprError) as save_err:
        await h.service.save(S, [item(key, etag="not-a-number")])
    with pytest.raises(DaprError) as delete_err:
        await h.service.delete(S, key, "not-a-number")
    if h.kind in ("redis", "postgres"):  # numeric etags: daprd answers 400 / INVALID_ARGUMENT
        assert save_err.value.http_status == 400
        assert save_err.value.grpc_code is grpc.StatusCode.INVALID_ARGUMENT
        assert "invalid etag value" in save_err.value.message
    else:  # uuid etags: any string is a possible etag, so it simply does not match
        assert save_err.value.http_status == 409
    # contrib's redis delete does not parse the etag, it only compares it
    assert delete_err.value.http_status == (400 if h.kind == "postgres" else 409)


async def test_etag_on_missing_key(harness: Harness) -> None:
    h, key = harness, harness.key()
    if h.kind == "redis":
        # contrib's script writes when the key has no version yet, whatever the etag.
        await h.service.save(S, [item(key, etag="7")])
        assert await etag_of(h, key) == "1"
        await h.service.delete(h.name, h.key(), "7")
        return
    with pytest.raises(DaprError) as exc:
        await h.service.save(S, [item(key, etag="12345")])
    assert exc.value.http_status == 409
    with pytest.raises(DaprError) as deleted:
        await h.service.delete(S, key, "12345")
    assert deleted.value.http_status == 409


async def test_first_write(harness: Harness) -> None:
    h, key = harness, harness.key()
    first = Concurrency.FIRST_WRITE
    await h.service.save(S, [item(key, concurrency=first)])  # absent: inserted
    etag = await etag_of(h, key)
    with pytest.raises(DaprError) as again:
        await h.service.save(S, [item(key, b'"x"', concurrency=first)])
    # memory/sqlite report an etag mismatch; postgres "no item was updated" and redis
    # "failed to set key" are plain store errors in contrib, hence daprd's 500.
    expected = {"memory": 409, "sqlite": 409, "postgres": 500, "redis": 500}[h.kind]
    assert again.value.http_status == expected
    await h.service.save(S, [item(key, b'"y"', etag=etag, concurrency=first)])
    found = await h.service.get(S, key)
    assert found is not None and found.data == b'"y"'


async def test_bad_ttl_is_refused(harness: Harness) -> None:
    h = harness
    with pytest.raises(DaprError) as exc:
        await h.service.save(S, [item(h.key(), metadata={"ttlInSeconds": "soon"})])
    assert (exc.value.error_code, exc.value.http_status) == ("ERR_STATE_SAVE", 500)
    assert "soon" in exc.value.message


async def test_a_ttl_beyond_a_go_int_is_out_of_range(harness: Harness) -> None:
    """Every store parses ttlInSeconds into a 64-bit Go int: a longer number is Go's range
    error, not a TTL the store would accept or clamp."""
    h = harness
    with pytest.raises(DaprError) as exc:
        await h.service.save(S, [item(h.key(), metadata={"ttlInSeconds": "9" * 20})])
    assert (exc.value.error_code, exc.value.http_status) == ("ERR_STATE_SAVE", 500)
    assert f'parsing "{"9" * 20}": value out of range' in exc.value.message


async def test_ttl_expiry_and_clearing(harness: Harness) -> None:
    h = harness
    expiring, rewritten, persisted, far = h.key("exp"), h.key("rew"), h.key("per"), h.key("far")
    short = {"ttlInSeconds": "1"}
    started = time.time()
    await h.service.save(S, [item(k, metadata=short) for k in (expiring, rewritten, persisted)])
    await h.service.save(S, [item(far, metadata={"ttlInSeconds": "3600"})])
    far_found = await h.service.get(S, far)
    assert far_found is not None
    if h.kind == "redis":  # contrib's redis store does not report the expiry time
        assert "ttlExpireTime" not in far_found.metadata
    else:
        stamp = far_found.metadata["ttlExpireTime"]
        expires = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert abs(expires - (started + 3600)) < 5
    await h.service.save(S, [item(rewritten)])  # no ttlInSeconds
    await h.service.save(S, [item(persisted, metadata={"ttlInSeconds": "-1"})])
    found = await h.service.get(S, persisted)
    assert found is not None and "ttlExpireTime" not in found.metadata
    deadline = time.monotonic() + 6
    while await h.service.get(S, expiring) is not None:
        assert time.monotonic() < deadline, "key with a 1 s TTL did not expire"
        await asyncio.sleep(0.1)
    assert await h.service.get(S, persisted) is not None
    if h.kind == "redis":
        # HSET keeps the key's TTL: on redis only ttlInSeconds <= 0 removes it (as in daprd).
        while await h.service.get(S, rewritten) is not None:
            assert time.monotonic() < deadline, "redis kept the TTL, the key should expire"
            await asyncio.sleep(0.1)
    else:
        assert await h.service.get(S, rewritten) is not None


async def test_bulk_get_keeps_order_and_user_keys(harness: Harness) -> None:
    h = harness
    present, missing, other = h.key("a"), h.key("missing"), h.key("b")
    await h.service.save(S, [item(present, b'"1"'), item(other, b'"2"')])
    items = await h.service.bulk_get(S, [present, missing, other])
    assert [i.key for i in items] == [present, missing, other]
    assert items[0].response is not None and items[0].response.data == b'"1"'
    assert items[1].response is None and not items[1].error
    assert items[2].response is not None and items[2].response.etag
    assert await h.service.bulk_get(S, []) == []


async def test_multi_item_save_is_not_a_transaction(harness: Harness) -> None:
    h, good, guarded = harness, harness.key("good"), harness.key("guarded")
    await h.service.save(S, [item(guarded)])
    with pytest.raises(DaprError) as exc:
        await h.service.save(S, [item(good, b'"ok"'), item(guarded, b'"no"', etag="999999")])
    assert exc.value.http_status == 409
    found = await h.service.get(S, good)
    assert found is not None and found.data == b'"ok"'


async def test_transaction_applies_upserts_and_deletes(harness: Harness) -> None:
    h, a, b = harness, harness.key("a"), harness.key("b")
    await h.service.save(S, [item(b)])
    await h.service.transact(S, [item(a, b'"A"'), DeleteRequest(b)])
    found = await h.service.get(S, a)
    assert found is not None and found.data == b'"A"'
    assert await h.service.get(S, b) is None


async def test_transaction_with_a_failing_etag(harness: Harness) -> None:
    h, fresh, guarded = harness, harness.key("fresh"), harness.key("guarded")
    await h.service.save(S, [item(guarded, b'"before"')])
    with pytest.raises(DaprError) as exc:
        await h.service.transact(
            S, [item(fresh, b'"new"'), item(guarded, b'"after"', etag="999999")]
        )
    assert (exc.value.error_code, exc.value.http_status) == ("ERR_STATE_TRANSACTION", 500)
    assert exc.value.grpc_code is grpc.StatusCode.INTERNAL
    assert exc.value.message.startswith("error while executing state transaction: ")
    unchanged = await h.service.get(S, guarded)
    assert unchanged is not None and unchanged.data == b'"before"'
    if h.kind == "redis":
        # MULTI/EXEC has no rollback: the operation whose etag matched was applied.
        assert await h.service.get(S, fresh) is not None
    else:
        assert await h.service.get(S, fresh) is None


async def test_illegal_and_empty_keys(harness: Harness) -> None:
    h = harness
    calls = [
        h.service.get(S, "a||b"),
        h.service.save(S, [item("a||b")]),
        h.service.delete(S, "a||b"),
        h.service.bulk_get(S, ["ok", "a||b"]),
        h.service.transact(S, [item("a||b")]),
    ]
    for call in calls:
        with pytest.raises(DaprError) as exc:
            await call
        error = exc.value
        assert (error.error_code, error.http_status) == ("ERR_MALFORMED_REQUEST", 400)
        assert error.grpc_code is grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "DAPR_STATE_ILLEGAL_KEY"
        assert error.resource == ("state", S)
        assert error.field_violations == [("a||b", "input key/keyPrefix 'a||b' can't contain '||'")]
    with pytest.raises(DaprError) as empty:
        await h.service.save(S, [item("")])
    assert (empty.value.error_code, empty.value.http_status) == ("ERR_MALFORMED_REQUEST", 400)
    assert empty.value.grpc_code is grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_store(harness: Harness) -> None:
    with pytest.raises(DaprError) as exc:
        await harness.service.get("nope", "k")
    error = exc.value
    assert (error.error_code, error.http_status, error.reason) == (
        "ERR_STATE_STORE_NOT_FOUND",
        400,
        "DAPR_STATE_NOT_FOUND",
    )
    assert error.message == "state store nope is not found"
    assert error.grpc_code is grpc.StatusCode.INVALID_ARGUMENT


async def test_json_content_type_from_grpc(harness: Harness) -> None:
    h, key = harness, harness.key()
    meta = {"contentType": "application/json"}
    await h.service.save(S, [SetRequest(key, b'{"n":1}', metadata=meta)])
    found = await h.service.get(S, key)
    assert found is not None and found.data.replace(b" ", b"") == b'{"n":1}'
    with pytest.raises(DaprError):
        await h.service.save(S, [SetRequest(key, b"not json", metadata=meta)])


async def test_query_refused_without_query_api(harness: Harness) -> None:
    if harness.kind == "postgres":  # the one store with QUERY_API (more in test_postgres.py)
        assert "QUERY_API" in harness.store.features
        await harness.service.query(S, b'{"filter": {"EQ": {"a": 1}}}')
        return
    assert "QUERY_API" not in harness.store.features
    with pytest.raises(DaprError) as exc:
        await harness.service.query(S, b'{"filter": {"EQ": {"a": 1}}}')
    if harness.kind == "redis":
        # daprd's redis store implements Query but needs RedisJSON, so the query fails.
        assert exc.value.error_code == "ERR_STATE_QUERY"
        assert exc.value.reason == "DAPR_STATE_QUERY_FAILED"
    else:
        assert exc.value.error_code == "ERR_STATE_STORE_NOT_SUPPORTED"
        assert exc.value.reason == "DAPR_STATE_QUERYING_NOT_SUPPORTED"
        assert exc.value.message == "state store does not support querying"
    assert exc.value.http_status == 500
