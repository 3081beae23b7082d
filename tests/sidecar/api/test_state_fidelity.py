"""daprd's exact answers where the State API is easy to get subtly wrong.

Request options as each contrib store checks them, state.redis ignoring the etag under an
explicit last-write, Go's typed decoding of HTTP bodies, HTTP errors without details where daprd
answers with messages.APIError, and the gRPC wording of empty names and keys. Run against the
session's conformance sidecar (tests/sidecar/api/conformance.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
import redis
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2, state_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.sidecar.api.conformance import APP_ID, STORES, Conformance
from tests.sidecar.api.conftest import unique

_OPTIONS = common_pb2.StateOptions


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, conformance: Conformance) -> str:
    if not conformance.has(request.param):
        pytest.skip("PostgreSQL server binaries are not installed")
    name: str = request.param
    return name


@pytest.fixture()
def http(conformance: Conformance) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=conformance.sidecar.http, timeout=20) as client:
        yield client


@pytest.fixture()
def stub(conformance: Conformance) -> Iterator[dapr_pb2_grpc.DaprStub]:
    with grpc.insecure_channel(conformance.sidecar.grpc_address) as channel:
        yield dapr_pb2_grpc.DaprStub(channel)


def api_error(response: httpx.Response, status: int, code: str) -> str:
    """daprd's messages.APIError over HTTP: exactly errorCode and message. The message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errorCode", "message"}, body
    assert body["errorCode"] == code, body
    message: str = body["message"]
    return message


def save(http: httpx.Client, store: str, item: dict[str, Any]) -> httpx.Response:
    return http.post(f"/v1.0/state/{store}", json=[item])


def transact(http: httpx.Client, store: str, *ops: tuple[str, dict[str, Any]]) -> httpx.Response:
    body = {"operations": [{"operation": kind, "request": request} for kind, request in ops]}
    return http.post(f"/v1.0/state/{store}/transaction", json=body)


def rich(error: grpc.RpcError) -> list[Any]:
    """The unpacked details of a gRPC error, in order."""
    status = rpc_status.from_call(error)
    assert status is not None
    out: list[Any] = []
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.ResourceInfo,
            error_details_pb2.BadRequest,
        ):
            message = kind()
            if detail.Unpack(message):
                out.append(message)
    return out


# --- options.concurrency / options.consistency (contrib state.CheckRequestOptions) ------------


def test_unknown_options_fail_where_the_store_checks_them(http: httpx.Client, store: str) -> None:
    key = unique("opts")
    bad = {"key": key, "value": 1, "options": {"concurrency": "firstWrite"}}
    message = api_error(save(http, store, bad), 500, "ERR_STATE_SAVE")
    assert message == (
        f"failed saving state in state store {store}: unrecognized concurrency model 'firstWrite'"
    )
    # Consistency is checked first; Go's decoder matches the field names regardless of case.
    both = {"key": key, "value": 1, "Options": {"Concurrency": "x", "CONSISTENCY": "often"}}
    message = api_error(save(http, store, both), 500, "ERR_STATE_SAVE")
    assert message.endswith("unrecognized consistency model 'often'")
    assert http.get(f"/v1.0/state/{store}/{key}").status_code == 204
    known = {"concurrency": "last-write", "consistency": "strong"}
    fine = {"key": key, "value": 1, "options": known}
    assert save(http, store, fine).status_code == 204

    # Deletes: contrib's postgresql v1 doDelete never checks the options.
    deleted = http.delete(f"/v1.0/state/{store}/{key}?concurrency=bogus&concurrency=last-write")
    if store == "pgstore":
        assert deleted.status_code == 204, deleted.text
    else:
        message = api_error(deleted, 500, "ERR_STATE_DELETE")
        why = "unrecognized concurrency model 'bogus'"
        assert message == f"failed deleting state with key {key}: {why}"
        assert http.get(f"/v1.0/state/{store}/{key}").status_code == 200


def test_unknown_options_in_transactions(http: httpx.Client, store: str) -> None:
    """state.redis's Multi checks no options; in-memory's only its upserts'; sqlite and
    postgresql both (postgresql's doDelete none)."""
    upserted, deleted = unique("tx-up"), unique("tx-del")
    assert save(http, store, {"key": deleted, "value": 1}).status_code == 204
    bad = {"concurrency": "sometimes"}
    upsert = transact(http, store, ("upsert", {"key": upserted, "value": 1, "options": bad}))
    if store == "redisstore":
        assert upsert.status_code == 204, upsert.text
    else:
        message = api_error(upsert, 500, "ERR_STATE_TRANSACTION")
        assert message == (
            "error while executing state transaction: unrecognized concurrency model 'sometimes'"
        )
    delete = transact(http, store, ("delete", {"key": deleted, "options": bad}))
    if store == "sqlitestore":
        api_error(delete, 500, "ERR_STATE_TRANSACTION")
        assert http.get(f"/v1.0/state/{store}/{deleted}").status_code == 200
    else:
        assert delete.status_code == 204, delete.text
        assert http.get(f"/v1.0/state/{store}/{deleted}").status_code == 204


def test_unknown_grpc_enum_values_are_no_options(stub: dapr_pb2_grpc.DaprStub) -> None:
    """daprd's stateConcurrencyToString maps a number it does not know to "": no error."""
    options = _OPTIONS(concurrency=7, consistency=9)  # type: ignore[arg-type]
    item = common_pb2.StateItem(key=unique("enum"), value=b"1", options=options)
    stub.SaveState(state_pb2.SaveStateRequest(store_name="sqlitestore", states=[item]), timeout=10)


# --- state.redis under an explicit last-write ------------------------------------------------


def test_explicit_last_write_makes_redis_ignore_the_etag(
    http: httpx.Client, store: str, stub: dapr_pb2_grpc.DaprStub
) -> None:
    """contrib's redis parseETag returns no version under last-write: the etag is neither
    parsed nor compared on save (nor in Multi). Its Delete, and the other stores, compare it."""
    key = unique("lww")
    assert save(http, store, {"key": key, "value": 1}).status_code == 204
    last_write = {"concurrency": "last-write"}
    stale = save(http, store, {"key": key, "value": 2, "etag": "12345", "options": last_write})
    malformed = save(http, store, {"key": key, "value": 3, "etag": "x", "options": last_write})
    in_tx = transact(
        http, store, ("upsert", {"key": key, "value": 4, "etag": "999", "options": last_write})
    )
    item = common_pb2.StateItem(
        key=key,
        value=b"5",
        etag=common_pb2.Etag(value="777"),
        options=_OPTIONS(concurrency=_OPTIONS.CONCURRENCY_LAST_WRITE),
    )
    request = state_pb2.SaveStateRequest(store_name=store, states=[item])
    if store == "redisstore":
        assert (stale.status_code, malformed.status_code, in_tx.status_code) == (204, 204, 204)
        stub.SaveState(request, timeout=10)
        assert http.get(f"/v1.0/state/{store}/{key}").json() == 5
        # Unspecified concurrency still compares the etag.
        unset = save(http, store, {"key": key, "value": 6, "etag": "12345"})
        api_error(unset, 409, "ERR_STATE_SAVE")
    else:
        api_error(stale, 409, "ERR_STATE_SAVE")
        api_error(malformed, 400 if store == "pgstore" else 409, "ERR_STATE_SAVE")
        api_error(in_tx, 500, "ERR_STATE_TRANSACTION")
        with pytest.raises(grpc.RpcError) as caught:
            stub.SaveState(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.ABORTED
        assert http.get(f"/v1.0/state/{store}/{key}").json() == 1
    removed = http.delete(
        f"/v1.0/state/{store}/{key}?concurrency=last-write", headers={"If-Match": "12345"}
    )
    api_error(removed, 409, "ERR_STATE_DELETE")


# --- HTTP bodies decoded into daprd's Go types -----------------------------------------------

SAVE_BODIES = {
    "numeric metadata": (
        [{"key": "k", "value": 1, "metadata": {"ttlInSeconds": 100}}],
        "json: cannot unmarshal number into Go struct field SetRequest.metadata of type string",
    ),
    "numeric etag": (
        [{"key": "k", "value": 1, "etag": 5}],
        "json: cannot unmarshal number into Go struct field SetRequest.etag of type string",
    ),
    "numeric key": (
        [{"key": 5, "value": 1}],
        "json: cannot unmarshal number into Go struct field SetRequest.key of type string",
    ),
    "options a string": (
        [{"key": "k", "options": "first-write"}],
        "json: cannot unmarshal string into Go struct field SetRequest.options of type "
        "state.SetStateOption",
    ),
    "boolean concurrency": (
        [{"key": "k", "options": {"concurrency": True}}],
        "json: cannot unmarshal bool into Go struct field SetStateOption.options.Concurrency of "
        "type string",
    ),
    "an object": (
        {"key": "k", "value": 1},
        "json: cannot unmarshal object into Go value of type []state.SetRequest",
    ),
    "an array of numbers": (
        [1],
        "json: cannot unmarshal number into Go value of type state.SetRequest",
    ),
}


@pytest.mark.parametrize("case", SAVE_BODIES)
def test_http_save_bodies_are_typed_as_gos_decoder_types_them(
    http: httpx.Client, case: str
) -> None:
    body, message = SAVE_BODIES[case]
    response = http.post("/v1.0/state/redisstore", json=body)
    assert api_error(response, 400, "ERR_MALFORMED_REQUEST") == message


def test_http_save_reads_what_gos_decoder_accepts(conformance: Conformance) -> None:
    """Field names regardless of case, null metadata values as "", and the query's
    ``metadata.*`` merged into every item (daprd's onPostState)."""
    key = unique("typed")
    with httpx.Client(base_url=conformance.sidecar.http, timeout=20) as http:
        body = [{"KEY": key, "Value": {"a": 1}, "metadata": {"contentType": None}}]
        saved = http.post("/v1.0/state/redisstore?metadata.ttlInSeconds=60", json=body)
        assert saved.status_code == 204, saved.text
        assert http.get(f"/v1.0/state/redisstore/{key}").json() == {"a": 1}
        assert http.post("/v1.0/state/redisstore", content=b"null").status_code == 204
        empty = http.post("/v1.0/state/redisstore", content=b"  ")
        assert api_error(empty, 400, "ERR_MALFORMED_REQUEST") == "EOF"
    with redis.Redis(host="127.0.0.1", port=conformance.redis.port) as client:
        assert 0 < int(client.ttl(f"{APP_ID}||{key}")) <= 60


TRANSACTION_BODIES = {
    "numeric metadata in an upsert": (
        {"operations": [{"operation": "upsert", "request": {"key": "k", "metadata": {"t": 1}}}]},
        "1 error(s) decoding:\n\n* 'Metadata[t]' expected type 'string', got unconvertible type "
        "'float64', value: '1'",
    ),
    "numeric etag and options in an upsert": (
        {
            "operations": [
                {
                    "operation": "upsert",
                    "request": {"key": "k", "etag": 5, "options": {"concurrency": 1.5}},
                }
            ]
        },
        "2 error(s) decoding:\n\n* 'ETag' expected type 'string', got unconvertible type "
        "'float64', value: '5'\n* 'Options.Concurrency' expected type 'string', got "
        "unconvertible type 'float64', value: '1.5'",
    ),
    "a delete whose request is a string": (
        {"operations": [{"operation": "delete", "request": "k"}]},
        "'' expected a map, got 'string'",
    ),
    "numeric transaction metadata": (
        {"metadata": {"a": 1}, "operations": []},
        "json: cannot unmarshal number into Go struct field stateTransactionRequestBody.metadata "
        "of type string",
    ),
    "numeric operation": (
        {"operations": [{"operation": 1, "request": {"key": "k"}}]},
        "json: cannot unmarshal number into Go struct field "
        "stateTransactionRequestBodyOperation.operations.operation of type string",
    ),
}


@pytest.mark.parametrize("case", TRANSACTION_BODIES)
def test_http_transaction_bodies_are_typed_as_daprd_types_them(
    http: httpx.Client, case: str
) -> None:
    body, detail = TRANSACTION_BODIES[case]
    response = http.post("/v1.0/state/sqlitestore/transaction", json=body)
    message = api_error(response, 400, "ERR_MALFORMED_REQUEST")
    assert message == f"failed deserializing HTTP body: {detail}"


def test_http_bulk_get_bodies_are_typed_as_daprd_types_them(http: httpx.Client) -> None:
    cases = {
        b'{"keys": ["k"], "metadata": {"a": 1}}': "json: cannot unmarshal number into Go struct "
        "field BulkGetRequest.metadata of type string",
        b'{"keys": ["k"], "parallelism": 1.50}': "json: cannot unmarshal number 1.50 into Go "
        "struct field BulkGetRequest.parallelism of type int",
        b'{"keys": ["k"], "parallelism": 2.50} x': "json: cannot unmarshal number 2.50 into Go "
        "struct field BulkGetRequest.parallelism of type int",
        b'{"keys": [1]}': "json: cannot unmarshal number into Go struct field "
        "BulkGetRequest.keys of type string",
    }
    for body, detail in cases.items():
        response = http.post("/v1.0/state/redisstore/bulk", content=body)
        message = api_error(response, 400, "ERR_MALFORMED_REQUEST")
        assert message == f"failed deserializing HTTP body: {detail}"
    # A null key is Go's "" (a key like any other); null is no request.
    found = http.post("/v1.0/state/redisstore/bulk", content=b'{"keys": [null]}')
    assert found.json() == [{"key": ""}]
    assert http.post("/v1.0/state/redisstore/bulk", content=b"null").json() == []


# --- HTTP values: what the store's Go library writes for a value daprd decoded ------------

#: A value saved over HTTP and read back: state.redis writes it with json-iterator's
#: ConfigFastest, the other stores with encoding/json (texts produced by those Go libraries;
#: tests/sidecar/state/test_go_values.py has more).
HTTP_VALUES = [
    # (JSON sent, state.redis's text, the other stores')
    ("3.14159265358979", "3.141593", "3.14159265358979"),
    ("9007199254740993", "9007199254740992", "9007199254740992"),
    ("0.0000004", "0", "4e-7"),
    ("1e21", "1e+21", "1e+21"),
    ("[-0,0,-0.0]", "[0,0,0]", "[-0,0,-0]"),  # the sign of a float64 zero
    ('"a<b>&c"', '"a<b>&c"', '"a\\u003cb\\u003e\\u0026c"'),
    (
        '{"b":[0.1234565,null],"a":"x"}',
        '{"b":[0.123457,null],"a":"x"}',
        '{"a":"x","b":[0.1234565,null]}',
    ),
]


def _read_back(http: httpx.Client, store: str, key: str) -> bytes:
    got = http.get(f"/v1.0/state/{store}/{key}")
    assert got.status_code == 200, got.text
    return got.content


@pytest.mark.parametrize(("sent", "on_redis", "elsewhere"), HTTP_VALUES)
def test_http_values_are_stored_as_the_stores_go_library_writes_them(
    http: httpx.Client, store: str, sent: str, on_redis: str, elsewhere: str
) -> None:
    expected = on_redis if STORES[store] == "state.redis" else elsewhere
    key, tx_key = unique("goval"), unique("goval-tx")
    saved = http.post(f"/v1.0/state/{store}", content=f'[{{"key":"{key}","value":{sent}}}]')
    assert saved.status_code == 204, saved.text
    upsert = f'{{"operation":"upsert","request":{{"key":"{tx_key}","value":{sent}}}}}'
    done = http.post(f"/v1.0/state/{store}/transaction", content=f'{{"operations":[{upsert}]}}')
    assert done.status_code == 204, done.text
    for stored in (_read_back(http, store, key), _read_back(http, store, tx_key)):
        if STORES[store] == "state.postgresql":  # JSONB keeps the value, not its text
            assert json.loads(stored) == json.loads(expected)
        else:
            assert stored.decode() == expected


def test_grpc_values_are_stored_as_sent(stub: dapr_pb2_grpc.DaprStub, http: httpx.Client) -> None:
    key = unique("goval-grpc")
    item = common_pb2.StateItem(key=key, value=b'{"pi":3.14159265358979}')
    stub.SaveState(state_pb2.SaveStateRequest(store_name="redisstore", states=[item]))
    assert _read_back(http, "redisstore", key) == b'{"pi":3.14159265358979}'


def test_state_bodies_are_read_as_a_go_decoder_reads_them(http: httpx.Client) -> None:
    """daprd decodes state bodies with json.NewDecoder(r.Body).Decode: the first value only,
    and Go's syntax errors."""
    key = unique("decoder")
    trailing = http.post("/v1.0/state/redisstore", content=f'[{{"key":"{key}","value":1}}] x')
    assert trailing.status_code == 204, trailing.text
    assert _read_back(http, "redisstore", key) == b"1"
    bad_number = http.post("/v1.0/state/redisstore", content=f'[{{"key":"{key}","value":1.}}]')
    assert api_error(bad_number, 400, "ERR_MALFORMED_REQUEST") == (
        "invalid character '}' after decimal point in numeric literal"
    )
    bad_tx = http.post("/v1.0/state/redisstore/transaction", content=b'{"operations": [}')
    assert api_error(bad_tx, 400, "ERR_MALFORMED_REQUEST") == (
        "failed deserializing HTTP body: invalid character '}' looking for beginning of value"
    )
    cut = http.post("/v1.0/state/redisstore/bulk", content=b'{"keys": ["a"')
    assert api_error(cut, 400, "ERR_MALFORMED_REQUEST") == (
        "failed deserializing HTTP body: unexpected EOF"
    )


def test_a_number_no_float64_holds_is_a_malformed_body(http: httpx.Client) -> None:
    key = unique("goval-range")
    saved = http.post(
        "/v1.0/state/redisstore", content=f'[{{"key":"{key}","value":[1e400]}}] unread'
    )
    assert api_error(saved, 400, "ERR_MALFORMED_REQUEST") == (
        "json: cannot unmarshal number 1e400 into Go struct field SetRequest.value of type float64"
    )
    upsert = '{"operation":"upsert","request":{"key":"k","value":{"x":-1E+999}}}'
    done = http.post("/v1.0/state/redisstore/transaction", content=f'{{"operations":[{upsert}]}}')
    assert api_error(done, 400, "ERR_MALFORMED_REQUEST") == (
        "failed deserializing HTTP body: json: cannot unmarshal number -1E+999 into Go struct "
        "field stateTransactionRequestBodyOperation.operations.request of type float64"
    )
    nan = http.post("/v1.0/state/redisstore", content=f'[{{"key":"{key}","value":NaN}}]')
    assert api_error(nan, 400, "ERR_MALFORMED_REQUEST") == (
        "invalid character 'N' looking for beginning of value"
    )
    assert http.get(f"/v1.0/state/redisstore/{key}").status_code == 204


# --- HTTP errors: details only where daprd's error is a dapr/kit error ---------------------


def test_http_state_api_errors_carry_no_details(http: httpx.Client) -> None:
    key = unique("nodetails")
    assert save(http, "sqlitestore", {"key": key, "value": 1}).status_code == 204
    stale_save = save(http, "sqlitestore", {"key": key, "value": 2, "etag": "no"})
    api_error(stale_save, 409, "ERR_STATE_SAVE")
    stale = http.delete(f"/v1.0/state/sqlitestore/{key}", headers={"If-Match": "no"})
    api_error(stale, 409, "ERR_STATE_DELETE")
    etag = save(http, "redisstore", {"key": key, "value": 1, "etag": "x"})
    assert api_error(etag, 400, "ERR_STATE_SAVE").startswith("failed saving state")
    bad_ttl = save(http, "redisstore", {"key": key, "value": 1, "metadata": {"ttlInSeconds": "x"}})
    api_error(bad_ttl, 500, "ERR_STATE_SAVE")
    failed_tx = transact(http, "sqlitestore", ("upsert", {"key": key, "value": 3, "etag": "no"}))
    api_error(failed_tx, 500, "ERR_STATE_TRANSACTION")
    merge = transact(http, "sqlitestore", ("merge", {"key": key}))
    assert api_error(merge, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION") == (
        "operation type merge not supported"
    )
    empty = save(http, "sqlitestore", {"key": "", "value": 1})
    assert api_error(empty, 400, "ERR_MALFORMED_REQUEST") == '"key" is a required field'
    # dapr/kit errors keep their details, in the order daprd's builder appends them.
    illegal = save(http, "sqlitestore", {"key": "a||b", "value": 1}).json()
    kinds = [d["@type"].rsplit(".", 1)[1] for d in illegal["details"]]
    assert kinds == ["BadRequest", "ResourceInfo", "ErrorInfo"]
    # Each detail is a Go map there: encoding/json writes its keys sorted.
    assert list(illegal["details"][2]) == ["@type", "domain", "metadata", "reason"]


def test_grpc_keeps_rich_state_errors(stub: dapr_pb2_grpc.DaprStub) -> None:
    key = unique("grpc-rich")
    item = common_pb2.StateItem(key=key, value=b"1", etag=common_pb2.Etag(value="no"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.SaveState(state_pb2.SaveStateRequest(store_name="memstore", states=[item]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    (info,) = rich(caught.value)
    assert (info.reason, info.domain) == ("ERR_STATE_SAVE", "dapr.io")


# --- ErrorInfo metadata: daprd's nil maps and the app id -------------------------------------


def error_info(body: dict[str, Any]) -> dict[str, Any]:
    """The ErrorInfo detail of a dapr/kit error's HTTP JSON (always its last detail)."""
    info: dict[str, Any] = body["details"][-1]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo", body
    return info


def test_http_error_info_metadata_is_null_where_daprd_passes_nil(http: httpx.Client) -> None:
    """dapr/kit's WithErrorInfo(reason, nil) renders ``"metadata": null``: InvalidKeyName, the
    query API's errors, and its unknown store (universal GetStateStore passes no app id)."""
    illegal = save(http, "sqlitestore", {"key": "a||b", "value": 1})
    assert illegal.status_code == 400
    assert error_info(illegal.json())["metadata"] is None
    query = {"filter": {"EQ": {"a": 1}}}
    cases = {
        "sqlitestore": (500, "ERR_STATE_STORE_NOT_SUPPORTED"),  # QueryUnsupported
        "redisstore": (500, "ERR_STATE_QUERY"),  # QueryFailed: no RedisJSON on this Redis
        "nosuch": (400, "ERR_STATE_STORE_NOT_FOUND"),  # NotFound("")
    }
    for store, (status, code) in cases.items():
        response = http.post(f"/v1.0-alpha1/state/{store}/query", json=query)
        assert (response.status_code, response.json()["errorCode"]) == (status, code)
        assert error_info(response.json())["metadata"] is None, response.json()
    # The HTTP state handlers name the app (NotFound(appID)).
    missing = http.get("/v1.0/state/nosuch/k")
    assert error_info(missing.json())["metadata"] == {"appID": APP_ID}


def test_a_query_is_parsed_after_the_store_is_found_and_known_to_query(
    http: httpx.Client, stub: dapr_pb2_grpc.DaprStub
) -> None:
    """daprd's QueryStateAlpha1: the store, then whether it is a Querier, then the body decoded
    into contrib's query.Query (ParseFilter included); a body it cannot decode is QueryFailed,
    500 / INTERNAL, "failed to parse JSON query body: ...", never a malformed-request 400."""
    parse_failed = "state store redisstore query failed: failed to parse JSON query body: "
    for body in (b"{not json", b"", b'{"filter": {"LIKE": {"a": 1}}}'):
        response = http.post("/v1.0-alpha1/state/redisstore/query", content=body)
        assert (response.status_code, response.json()["errorCode"]) == (500, "ERR_STATE_QUERY")
        assert response.json()["message"].startswith(parse_failed), response.json()
        with pytest.raises(grpc.RpcError) as caught:
            stub.QueryStateAlpha1(
                state_pb2.QueryStateRequest(store_name="redisstore", query=body.decode()),
                timeout=10,
            )
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert (caught.value.details() or "").startswith(parse_failed)
    unsupported = http.post("/v1.0-alpha1/state/sqlitestore/query", content=b"{not json")
    assert unsupported.json()["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"
    missing = http.post("/v1.0-alpha1/state/nosuch/query", content=b"{not json")
    assert missing.json()["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"
    # What parses reaches the store: this Redis has no RedisJSON.
    parsed = http.post("/v1.0-alpha1/state/redisstore/query", content=b"null")
    assert parsed.json()["message"] == (
        "state store redisstore query failed: "
        "redis-json server support is required for query capability"
    )


def test_grpc_unknown_state_store_names_no_app(stub: dapr_pb2_grpc.DaprStub) -> None:
    """daprd's gRPC state API looks stores up through universal GetStateStore: NotFound("")."""
    calls = (
        lambda: stub.GetState(state_pb2.GetStateRequest(store_name="nosuch", key="k"), timeout=10),
        lambda: stub.QueryStateAlpha1(
            state_pb2.QueryStateRequest(store_name="nosuch", query="{}"), timeout=10
        ),
    )
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        (info,) = rich(caught.value)
        assert (info.reason, dict(info.metadata)) == ("DAPR_STATE_NOT_FOUND", {})


# --- gRPC: empty names and keys ----------------------------------------------------------------


def test_grpc_empty_state_key_is_worded_as_daprd_grpc_words_it(
    stub: dapr_pb2_grpc.DaprStub,
) -> None:
    item = common_pb2.StateItem(key="", value=b"1")
    with pytest.raises(grpc.RpcError) as caught:
        stub.SaveState(state_pb2.SaveStateRequest(store_name="redisstore", states=[item]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "state key cannot be empty"
    (info,) = rich(caught.value)
    assert info.reason == "ERR_STATE_SAVE"


def test_grpc_publish_with_an_empty_pubsub_name(stub: dapr_pb2_grpc.DaprStub) -> None:
    """daprd's validateAndGetPubsubAndTopic: NameEmpty, with the request's metadata."""
    calls = (
        lambda: stub.PublishEvent(
            pubsub_pb2.PublishEventRequest(pubsub_name="", topic="t", metadata={"m": "1"}),
            timeout=10,
        ),
        lambda: stub.BulkPublishEvent(
            pubsub_pb2.BulkPublishRequest(pubsub_name="", topic="t", metadata={"m": "1"}),
            timeout=10,
        ),
    )
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "pubsub name is empty"
        resource, info = rich(caught.value)
        assert (resource.resource_type, resource.resource_name) == ("pubsub", "")
        assert resource.description == "pubsub name is empty"
        assert (info.reason, dict(info.metadata)) == ("DAPR_PUBSUB_NAME_EMPTY", {"m": "1"})


def test_http_bulk_get_writes_stored_values_as_json_raw_messages(
    stub: dapr_pb2_grpc.DaprStub, http: httpx.Client, store: str
) -> None:
    """daprd answers a bulk get with json.NewEncoder(w).Encode of BulkGetResponse structs: each
    value a json.RawMessage, compacted with HTML-safe escapes, and a newline at the end. A value
    that is no JSON fails the encoder, which has written nothing: 200 with an empty body."""
    spaced, text = unique("raw-json"), unique("raw-text")
    items = [
        common_pb2.StateItem(key=spaced, value=b'{"a": [1 , 2.50],\n "b" : "<x> & \\u2028"}'),
        common_pb2.StateItem(key=text, value=b"plain words"),
    ]
    stub.SaveState(state_pb2.SaveStateRequest(store_name=store, states=items))
    one = http.post(f"/v1.0/state/{store}/bulk", json={"keys": [spaced]})
    assert one.status_code == 200, one.text
    etag = one.json()[0]["etag"]
    data = '{"a":[1,2.50],"b":"\\u003cx\\u003e \\u0026 \\u2028"}'
    assert one.content == f'[{{"key":"{spaced}","data":{data},"etag":"{etag}"}}]\n'.encode()
    both = http.post(f"/v1.0/state/{store}/bulk", json={"keys": [spaced, text]})
    assert (both.status_code, both.content) == (200, b"")
    none = http.post(f"/v1.0/state/{store}/bulk", json={"keys": []})
    assert none.content == b"[]\n"
