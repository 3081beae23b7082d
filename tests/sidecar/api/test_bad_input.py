"""Bad input against a real sidecar: its HTTP and gRPC APIs, its resources folder, its run file.

Every answer is daprd's (status, ``errorCode`` / gRPC code and ErrorInfo reason), and after each
test the process still serves: healthz is 204 and a save/get round trip works on both APIs.
Malformed components YAML or dapr.yaml stop the process with the file, the field and the reason.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2, state_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.procs import PYTHON, free_port
from tests.sidecar.api.conftest import Sidecar, component, unique

#: daprd's default request body limit (``--max-body-size 4Mi``), HTTP and gRPC alike.
MAX_BODY = 4 << 20


@pytest.fixture(scope="module")
def http(sidecar: Sidecar) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.http, timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def stub(sidecar: Sidecar) -> Iterator[dapr_pb2_grpc.DaprStub]:
    # Larger than the server's limit on our side, so the server's own limit is what is tested.
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(sidecar.grpc_address, options=options) as channel:
        yield dapr_pb2_grpc.DaprStub(channel)


@pytest.fixture(autouse=True)
def _still_serving(sidecar: Sidecar, http: httpx.Client, stub: Any) -> Iterator[None]:
    """After every test: the process lives and both APIs still save and read state."""
    yield
    sidecar.proc.check_alive()
    assert http.get("/v1.0/healthz").status_code == 204
    key = unique("alive")
    assert http.post("/v1.0/state/redisstore", json=[{"key": key, "value": 1}]).status_code == 204
    assert http.get(f"/v1.0/state/redisstore/{key}").json() == 1
    item = common_pb2.StateItem(key=key, value=b"2")
    stub.SaveState(state_pb2.SaveStateRequest(store_name="redisstore", states=[item]), timeout=10)
    got = stub.GetState(state_pb2.GetStateRequest(store_name="redisstore", key=key), timeout=10)
    assert got.data == b"2"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["errorCode"] == code, body
    assert body["message"], body
    return body


# --- HTTP: state -----------------------------------------------------------------------------

#: Bodies of POST /v1.0/state/{store} that are not a JSON array of {key, value} objects.
MALFORMED_SAVE_BODIES = {
    "empty": b"",
    "not json": b"[{not json",
    "truncated": b'[{"key": "k", "value": {"a": ',
    "object, not array": b'{"key": "k", "value": 1}',
    "array of numbers": b"[1, 2]",
    "key is a number": b'[{"key": 5, "value": 1}]',
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("name", MALFORMED_SAVE_BODIES)
def test_http_save_with_a_malformed_body_is_400(http: httpx.Client, name: str) -> None:
    response = http.post(
        "/v1.0/state/redisstore",
        content=MALFORMED_SAVE_BODIES[name],
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400, "ERR_MALFORMED_REQUEST")


def test_http_save_reads_text_that_is_not_utf8_as_go_does(http: httpx.Client) -> None:
    """Go's encoding/json (daprd's HTTP API) does not refuse invalid UTF-8 or lone surrogate
    escapes in strings: it reads each as U+FFFD, and so does this sidecar."""
    key = unique("bad-utf8")
    body = b'[{"key": "%s\xff", "value": {"s": "\xed\xa0\x80|\\udc00"}}]' % key.encode()
    response = http.post(
        "/v1.0/state/redisstore", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 204, response.text
    found = http.get(f"/v1.0/state/redisstore/{key}\ufffd")
    assert found.json() == {"s": "\ufffd\ufffd\ufffd|\ufffd"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1.0/state/redisstore/bulk", b'{"keys": "not-a-list"}'),
        ("/v1.0/state/redisstore/bulk", b"{oops"),
        ("/v1.0/state/redisstore/bulk", b'{"keys": [1, null]}'),
        ("/v1.0/state/redisstore/bulk", b'{"keys": ["k"], "parallelism": "x"}'),
        ("/v1.0/state/redisstore/transaction", b'{"operations": {"upsert": 1}}'),
        ("/v1.0/state/redisstore/transaction", b'{"operations": [{"operation": "upsert"'),
    ],
    ids=[
        "bulk-keys-string",
        "bulk-not-json",
        "bulk-keys-not-strings",
        "bulk-parallelism-string",
        "transaction-ops-object",
        "transaction-truncated",
    ],
)
def test_http_bulk_and_transaction_malformed_bodies_are_400(
    http: httpx.Client, path: str, body: bytes
) -> None:
    assert_error(http.post(path, content=body), 400, "ERR_MALFORMED_REQUEST")


def test_http_wrong_content_type_does_not_change_the_answer(http: httpx.Client) -> None:
    # daprd reads the state body as JSON whatever the Content-Type says.
    key = unique("ct")
    saved = http.post(
        "/v1.0/state/redisstore",
        content=f'[{{"key": "{key}", "value": 7}}]',
        headers={"content-type": "text/plain"},
    )
    assert saved.status_code == 204, saved.text
    bad = http.post(
        "/v1.0/state/redisstore", content=b"<xml/>", headers={"content-type": "application/xml"}
    )
    assert_error(bad, 400, "ERR_MALFORMED_REQUEST")


@pytest.mark.parametrize("store", ["redisstore", "sqlitestore", "memstore"])
def test_http_illegal_keys_are_400(http: httpx.Client, store: str) -> None:
    body = assert_error(
        http.post(f"/v1.0/state/{store}", json=[{"key": "a||b", "value": 1}]),
        400,
        "ERR_MALFORMED_REQUEST",
    )
    assert "a||b" in body["message"]
    # Written with json.Marshal, as daprd writes its errors: HTML characters escaped.
    html = http.post(f"/v1.0/state/{store}", json=[{"key": "<a>&||b", "value": 1}])
    assert_error(html, 400, "ERR_MALFORMED_REQUEST")
    assert b"'\\u003ca\\u003e\\u0026||b'" in html.content
    assert html.content.startswith(b'{"errorCode":"ERR_MALFORMED_REQUEST","message":')
    assert_error(http.get(f"/v1.0/state/{store}/x||y"), 400, "ERR_MALFORMED_REQUEST")
    assert_error(http.delete(f"/v1.0/state/{store}/x||y"), 400, "ERR_MALFORMED_REQUEST")
    bulk = http.post(f"/v1.0/state/{store}/bulk", json={"keys": ["fine", "x||y"]})
    assert_error(bulk, 400, "ERR_MALFORMED_REQUEST")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1.0/state/nosuchstore/k", None),
        ("DELETE", "/v1.0/state/nosuchstore/k", None),
        ("POST", "/v1.0/state/nosuchstore", [{"key": "k", "value": 1}]),
        ("POST", "/v1.0/state/nosuchstore/bulk", {"keys": ["k"]}),
        ("POST", "/v1.0/state/nosuchstore/transaction", {"operations": []}),
    ],
    ids=["get", "delete", "save", "bulk", "transaction"],
)
def test_http_unknown_state_store_is_400(
    http: httpx.Client, method: str, path: str, body: Any
) -> None:
    response = http.request(method, path, json=body)
    message = assert_error(response, 400, "ERR_STATE_STORE_NOT_FOUND")["message"]
    assert "nosuchstore" in message


def test_http_bad_etags(http: httpx.Client) -> None:
    key = unique("etag")
    assert http.post("/v1.0/state/redisstore", json=[{"key": key, "value": 1}]).status_code == 204
    # state.redis etags are numbers: a non-numeric one is malformed (400), a wrong number is a
    # mismatch (409), on save and on delete alike.
    malformed = http.post(
        "/v1.0/state/redisstore", json=[{"key": key, "value": 2, "etag": "not-a-number"}]
    )
    assert_error(malformed, 400, "ERR_STATE_SAVE")
    mismatch = http.post("/v1.0/state/redisstore", json=[{"key": key, "value": 2, "etag": "99"}])
    assert_error(mismatch, 409, "ERR_STATE_SAVE")
    # state.redis deletes through a script comparing the version: any other etag mismatches.
    bad_delete = http.delete(f"/v1.0/state/redisstore/{key}", headers={"If-Match": "xyz"})
    assert_error(bad_delete, 409, "ERR_STATE_DELETE")
    assert http.get(f"/v1.0/state/redisstore/{key}").json() == 1
    # Inside a transaction an etag failure is ERR_STATE_TRANSACTION (500), nothing applied.
    transaction = http.post(
        "/v1.0/state/sqlitestore/transaction",
        json={
            "operations": [
                {"operation": "upsert", "request": {"key": key, "value": 1}},
                {"operation": "upsert", "request": {"key": unique("t"), "value": 1, "etag": "x"}},
            ]
        },
    )
    assert_error(transaction, 500, "ERR_STATE_TRANSACTION")
    assert http.get(f"/v1.0/state/sqlitestore/{key}").status_code == 204


@pytest.mark.parametrize("ttl", ["soon", "1.5", ""])
def test_http_invalid_ttl_metadata_is_refused(http: httpx.Client, ttl: str) -> None:
    key = unique("ttl")
    response = http.post(
        "/v1.0/state/redisstore",
        json=[{"key": key, "value": 1, "metadata": {"ttlInSeconds": ttl}}],
    )
    if ttl == "":
        assert response.status_code == 204, response.text  # empty = no TTL, as daprd
        return
    # The store fails parsing it (strconv.Atoi in daprd's state.redis): a save error, 500.
    assert ttl in assert_error(response, 500, "ERR_STATE_SAVE")["message"]
    assert http.get(f"/v1.0/state/redisstore/{key}").status_code == 204


def test_http_oversized_bodies_are_refused(http: httpx.Client) -> None:
    # daprd reads at most --max-body-size (4 MiB) of a body: 400 ERR_BODY_READ, nothing done.
    key = unique("big")
    huge = b'[{"key": "' + key.encode() + b'", "value": "' + b"x" * MAX_BODY + b'"}]'
    assert_error(http.post("/v1.0/state/redisstore", content=huge), 400, "ERR_BODY_READ")
    assert http.get(f"/v1.0/state/redisstore/{key}").status_code == 204

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit must hold for a chunked body too.
        yield b'[{"key": "' + key.encode() + b'", "value": "'
        for _ in range(5):
            yield b"y" * (1 << 20)
        yield b'"}]'

    chunked = http.post("/v1.0/state/redisstore", content=chunks())
    assert_error(chunked, 400, "ERR_BODY_READ")
    assert http.get(f"/v1.0/state/redisstore/{key}").status_code == 204
    published = http.post("/v1.0/publish/pubsub/bad-input-huge", content=b"y" * (MAX_BODY + 1))
    assert_error(published, 400, "ERR_BODY_READ")
    # Just under the limit is accepted.
    fits = [{"key": key, "value": "z" * (MAX_BODY - 1024)}]
    assert http.post("/v1.0/state/redisstore", json=fits).status_code == 204


def test_http_oversized_request_heads_get_gos_431(http: httpx.Client) -> None:
    """daprd's Go server reads a request line and headers of --read-buffer-size (4 KiB) plus
    4 KiB of slack; a longer head is a plain-text 431 before any handler, connection closed."""
    assert http.get("/v1.0/healthz", headers={"x-big": "a" * 7000}).status_code == 204
    refused = http.get("/v1.0/healthz", headers={"x-big": "a" * 8200})
    assert refused.status_code == 431
    assert refused.text == "431 Request Header Fields Too Large"
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    assert refused.headers["connection"] == "close"
    # The request line counts too: a long key in the path is refused alike.
    assert http.get(f"/v1.0/state/redisstore/{'k' * 8200}").status_code == 431


def test_size_flags_move_both_limits(resources: Path, registry: Path, workdir: Path) -> None:
    flags = ("--read-buffer-size", "16Ki", "--dapr-http-max-request-size", "1")
    car = Sidecar("sized", resources, registry, log_dir=workdir, flags=flags).start()
    try:
        with httpx.Client(base_url=car.http, timeout=20) as client:
            roomy = client.get("/v1.0/healthz", headers={"x-big": "a" * 16000})
            assert roomy.status_code == 204
            assert client.get("/v1.0/healthz", headers={"x-big": "a" * 20600}).status_code == 431
            key = unique("sized")
            over = [{"key": key, "value": "z" * (1 << 20)}]
            assert_error(client.post("/v1.0/state/redisstore", json=over), 400, "ERR_BODY_READ")
            fits = [{"key": key, "value": "z" * ((1 << 20) - 1024)}]
            assert client.post("/v1.0/state/redisstore", json=fits).status_code == 204
        with grpc.insecure_channel(car.grpc_address) as channel:
            stub = dapr_pb2_grpc.DaprStub(channel)
            item = common_pb2.StateItem(key=key, value=b"x" * (1 << 20))
            request = state_pb2.SaveStateRequest(store_name="redisstore", states=[item])
            refused = grpc_error(lambda: stub.SaveState(request, timeout=20))
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        car.stop()


def test_http_garbage_and_cut_connections(sidecar: Sidecar) -> None:
    with socket.create_connection(("127.0.0.1", sidecar.http_port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        assert raw.recv(64).startswith(b"HTTP/1.1 400")
    for _ in range(20):
        # A body promised and never sent, then the connection dropped.
        with socket.create_connection(("127.0.0.1", sidecar.http_port), timeout=10) as raw:
            raw.sendall(
                b"POST /v1.0/state/redisstore HTTP/1.1\r\nHost: x\r\n"
                b'Content-Length: 1000\r\n\r\n[{"key": '
            )


# --- HTTP: publish ---------------------------------------------------------------------------


def test_http_publish_bad_input(http: httpx.Client) -> None:
    missing = http.post("/v1.0/publish/nosuchpubsub/t", json={})
    body = assert_error(missing, 404, "ERR_PUBSUB_NOT_FOUND")
    # daprd's PubSub(name).NotFound(): its own wording, and no ResourceInfo.
    assert body["message"] == "pubsub nosuchpubsub is not found"
    assert [d["@type"].rsplit(".", 1)[1] for d in body["details"]] == ["ErrorInfo"]
    go_map = "Go value of type map[string]interface {}"
    for broken, why in (
        (b"{not json", "invalid character 'n' looking for beginning of object key string"),
        (b'{"a": x}', "invalid character 'x' looking for beginning of value"),
        (b'{"a": 1', "unexpected EOF"),
        (b"[1, 2]", f"json: cannot unmarshal array into {go_map}"),
        (b"", "EOF"),
        (b'"just a string"', f"json: cannot unmarshal string into {go_map}"),
    ):
        # A CloudEvent the publisher wrote itself must be a JSON object; daprd answers 500 here
        # (PubSub(name).WithAppError(appID, err).CloudEventCreation()), not 400: the message
        # names no cause, the ErrorInfo carries the decoder's, the ResourceInfo the message.
        response = http.post(
            "/v1.0/publish/pubsub/bad-input",
            content=broken,
            headers={"content-type": "application/cloudevents+json"},
        )
        body = assert_error(response, 500, "ERR_PUBSUB_CLOUD_EVENTS_SER")
        assert body["message"] == "cannot create cloudevent", body
        resource, info = body["details"]
        assert (resource["resource_name"], resource["description"]) == (
            "pubsub",
            "cannot create cloudevent",
        )
        assert info["metadata"] == {"appID": "api-app", "error": why}, body
    # contrib reads the event with one json.Decoder Decode: what follows the object is unread.
    trailing = http.post(
        "/v1.0/publish/pubsub/bad-input",
        content=b'{"id": "1", "data": "x"} and then some',
        headers={"content-type": "application/cloudevents+json"},
    )
    assert trailing.status_code == 204, trailing.text


def test_http_unknown_pubsub_error_carries_the_request_metadata(http: httpx.Client) -> None:
    """daprd's HTTP validateAndGetPubsubAndTopic: PubSub(name).WithMetadata(the request's
    metadata.* parameters, each by its first value).NotFound(); none is an empty map."""
    for path in (
        "/v1.0/publish/nosuchpubsub/t",
        "/v1.0/publish/bulk/nosuchpubsub/t",
        "/v1.0-alpha1/publish/bulk/nosuchpubsub/t",
    ):
        bare = assert_error(http.post(path, json=[]), 404, "ERR_PUBSUB_NOT_FOUND")
        assert bare["details"][-1]["metadata"] == {}, bare
        query = "?metadata.ttlInSeconds=5&metadata.ttlInSeconds=9&metadata.rawPayload=true&x=1"
        echoed = assert_error(http.post(path + query, json=[]), 404, "ERR_PUBSUB_NOT_FOUND")
        assert echoed["details"][-1]["metadata"] == {"ttlInSeconds": "5", "rawPayload": "true"}


def test_http_bulk_publish_bad_input_as_daprd_checks_it(http: httpx.Client) -> None:
    """daprd's onBulkPublish: pubsub and topic first, then the body, then each entry."""
    url = "/v1.0-alpha1/publish/bulk/pubsub/bad-input"
    unknown = http.post("/v1.0-alpha1/publish/bulk/nosuchpubsub/t", content=b"{oops")
    assert_error(unknown, 404, "ERR_PUBSUB_NOT_FOUND")
    for body in (b"{oops", b"", b'{"entryId": "1"}', b"[1]", b'[{"entryId": 1}]'):
        unreadable = assert_error(http.post(url, content=body), 400, "ERR_PUBSUB_EVENTS_SER")
        assert unreadable["message"].startswith(
            "error when unmarshaling the request for topic bad-input pubsub pubsub: "
        ), unreadable
    mismatch = http.post(
        url, json=[{"entryId": "1", "event": {"a": 1}, "contentType": "text/plain"}]
    )
    assert assert_error(mismatch, 400, "ERR_PUBSUB_EVENTS_SER")["message"] == (
        "error when marshalling cloud event envelope for topic bad-input pubsub pubsub: "
        "error: mismatch between contentType and event"
    )
    for entries in (
        [{"entryId": "", "event": "a", "contentType": "text/plain"}],
        [{"entryId": "1", "event": "a", "contentType": "text/plain"}] * 2,
    ):
        duplicate = assert_error(http.post(url, json=entries), 400, "ERR_PUBSUB_EVENTS_SER")
        assert duplicate["message"] == (
            "error marshaling events to bytes for topic bad-input pubsub pubsub. error: "
            "entryId is duplicated or not present for entry"
        )
    # null decodes to no entries in Go: nothing to publish.
    assert http.post(url, content=b"null").status_code == 204


# --- gRPC ------------------------------------------------------------------------------------


def grpc_error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def error_reason(error: grpc.RpcError) -> str | None:
    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            assert info.domain == "dapr.io"
            return str(info.reason)
    return None


def test_grpc_illegal_and_empty_keys(stub: dapr_pb2_grpc.DaprStub) -> None:
    illegal = grpc_error(
        lambda: stub.SaveState(
            state_pb2.SaveStateRequest(
                store_name="redisstore", states=[common_pb2.StateItem(key="a||b", value=b"1")]
            ),
            timeout=10,
        )
    )
    assert illegal.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(illegal) == "DAPR_STATE_ILLEGAL_KEY"
    for call in (
        lambda: stub.GetState(state_pb2.GetStateRequest(store_name="redisstore", key="x||y")),
        lambda: stub.DeleteState(state_pb2.DeleteStateRequest(store_name="redisstore", key="x||y")),
        lambda: stub.SaveState(
            state_pb2.SaveStateRequest(
                store_name="redisstore", states=[common_pb2.StateItem(key="", value=b"1")]
            )
        ),
    ):
        assert grpc_error(call).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_illegal_keys_in_bulk_and_transaction(stub: dapr_pb2_grpc.DaprStub) -> None:
    bulk = grpc_error(
        lambda: stub.GetBulkState(
            state_pb2.GetBulkStateRequest(store_name="redisstore", keys=["fine", "x||y"]),
            timeout=10,
        )
    )
    assert bulk.code() == grpc.StatusCode.INVALID_ARGUMENT
    transaction = grpc_error(
        lambda: stub.ExecuteStateTransaction(
            state_pb2.ExecuteStateTransactionRequest(
                storeName="sqlitestore",
                operations=[
                    state_pb2.TransactionalStateOperation(
                        operationType="upsert", request=common_pb2.StateItem(key="x||y", value=b"1")
                    )
                ],
            ),
            timeout=10,
        )
    )
    assert transaction.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_query_bad_input(stub: dapr_pb2_grpc.DaprStub) -> None:
    def query(store: str, text: str) -> grpc.RpcError:
        request = state_pb2.QueryStateRequest(store_name=store, query=text)
        return grpc_error(lambda: stub.QueryStateAlpha1(request, timeout=10))

    # daprd's state.redis is a Querier: the text is parsed first (malformed: QueryFailed,
    # Internal), then the store fails without RedisJSON (Internal). state.sqlite is none:
    # QueryUnsupported (Internal). An unknown store: NotFound (InvalidArgument).
    assert query("redisstore", "{not json").code() == grpc.StatusCode.INTERNAL
    # Go's decoder reads an unpaired surrogate escape as U+FFFD: the query parses, and fails
    # only where any query fails on this store.
    lone = '{"filter": {"EQ": {"tag": "\\ud800"}}}'
    assert query("redisstore", lone).code() == grpc.StatusCode.INTERNAL
    assert query("redisstore", '{"filter": {}}').code() == grpc.StatusCode.INTERNAL
    assert query("sqlitestore", '{"filter": {}}').code() == grpc.StatusCode.INTERNAL
    assert query("nosuch", "{}").code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_unknown_components(stub: dapr_pb2_grpc.DaprStub) -> None:
    for call in (
        lambda: stub.GetState(state_pb2.GetStateRequest(store_name="nosuch", key="k")),
        lambda: stub.GetBulkState(state_pb2.GetBulkStateRequest(store_name="nosuch", keys=["k"])),
        lambda: stub.ExecuteStateTransaction(
            state_pb2.ExecuteStateTransactionRequest(storeName="nosuch", operations=[])
        ),
    ):
        error = grpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nosuch" in (error.details() or "")
    for call in (
        lambda: stub.PublishEvent(
            pubsub_pb2.PublishEventRequest(
                pubsub_name="nosuch", topic="t", data=b"x", metadata={"ttlInSeconds": "5"}
            )
        ),
        lambda: stub.BulkPublishEvent(
            pubsub_pb2.BulkPublishRequest(
                pubsub_name="nosuch", topic="t", metadata={"ttlInSeconds": "5"}
            )
        ),
    ):
        missing_pubsub = grpc_error(call)
        assert missing_pubsub.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Unlike the HTTP API's, daprd's gRPC NotFound() carries no request metadata (nil).
        status = rpc_status.from_call(missing_pubsub)
        assert status is not None
        (packed,) = status.details
        info = error_details_pb2.ErrorInfo()
        assert packed.Unpack(info)
        assert (info.reason, dict(info.metadata)) == ("DAPR_PUBSUB_NOT_FOUND", {})
    empty_topic = grpc_error(
        lambda: stub.PublishEvent(
            pubsub_pb2.PublishEventRequest(
                pubsub_name="pubsub", topic="", data=b"x", metadata={"ttlInSeconds": "5"}
            )
        )
    )
    assert empty_topic.code() == grpc.StatusCode.INVALID_ARGUMENT
    # PubSub(name).WithMetadata(request metadata).TopicEmpty(): ErrorInfo carries the request's
    # metadata, and the ResourceInfo repeats the message, as every pub/sub error's does.
    status = rpc_status.from_call(empty_topic)
    assert status is not None
    info, resource = error_details_pb2.ErrorInfo(), error_details_pb2.ResourceInfo()
    assert any(detail.Unpack(info) for detail in status.details)
    assert any(detail.Unpack(resource) for detail in status.details)
    assert (info.reason, dict(info.metadata)) == (
        "DAPR_PUBSUB_TOPIC_NAME_EMPTY",
        {"ttlInSeconds": "5"},
    )
    assert (resource.resource_name, resource.description) == (
        "pubsub",
        "topic is empty in pubsub pubsub",
    )


def test_grpc_bad_etags_and_operations(stub: dapr_pb2_grpc.DaprStub) -> None:
    key = unique("grpc-etag")
    save = state_pb2.SaveStateRequest(
        store_name="redisstore", states=[common_pb2.StateItem(key=key, value=b"1")]
    )
    stub.SaveState(save, timeout=10)

    def save_with(etag: str) -> Any:
        item = common_pb2.StateItem(key=key, value=b"2", etag=common_pb2.Etag(value=etag))
        return stub.SaveState(
            state_pb2.SaveStateRequest(store_name="redisstore", states=[item]), timeout=10
        )

    assert grpc_error(lambda: save_with("not-a-number")).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_error(lambda: save_with("99")).code() == grpc.StatusCode.ABORTED
    unknown_op = grpc_error(
        lambda: stub.ExecuteStateTransaction(
            state_pb2.ExecuteStateTransactionRequest(
                storeName="redisstore",
                operations=[
                    state_pb2.TransactionalStateOperation(
                        operationType="merge", request=common_pb2.StateItem(key=key)
                    )
                ],
            ),
            timeout=10,
        )
    )
    assert unknown_op.code() == grpc.StatusCode.UNIMPLEMENTED
    bad_ttl = grpc_error(
        lambda: stub.SaveState(
            state_pb2.SaveStateRequest(
                store_name="redisstore",
                states=[common_pb2.StateItem(key=key, value=b"3", metadata={"ttlInSeconds": "x"})],
            ),
            timeout=10,
        )
    )
    assert bad_ttl.code() == grpc.StatusCode.INTERNAL  # a store error, as daprd
    got = stub.GetState(state_pb2.GetStateRequest(store_name="redisstore", key=key), timeout=10)
    assert got.data == b"1"


def test_grpc_bulk_publish_bad_entries(stub: dapr_pb2_grpc.DaprStub) -> None:
    def bulk(*ids: str) -> Any:
        entries = [
            pubsub_pb2.BulkPublishRequestEntry(entry_id=i, event=b"x", content_type="text/plain")
            for i in ids
        ]
        return stub.BulkPublishEventAlpha1(
            pubsub_pb2.BulkPublishRequest(pubsub_name="pubsub", topic="bad-input", entries=entries),
            timeout=10,
        )

    assert grpc_error(lambda: bulk("1", "1")).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_error(lambda: bulk("")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_garbage_and_oversized_messages(sidecar: Sidecar, stub: Any) -> None:
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        raw = channel.unary_unary(
            "/dapr.proto.runtime.v1.Dapr/SaveState",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        # Bytes that are no protobuf message fail the call, nothing more. daprd (grpc-go) says
        # INTERNAL; Python's grpc server says UNKNOWN before any sidecar code runs.
        garbage = grpc_error(lambda: raw(b"\xff\xff\xff\xff\x0f not protobuf", timeout=10))
        assert garbage.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    item = common_pb2.StateItem(key=unique("huge"), value=b"x" * (MAX_BODY + 1))
    huge = grpc_error(
        lambda: stub.SaveState(
            state_pb2.SaveStateRequest(store_name="redisstore", states=[item]), timeout=20
        )
    )
    assert huge.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- resources folder and run file -----------------------------------------------------------


def run_sidecar(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_with(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_sidecar(
        [
            *extra,
            "--app-id",
            "bad-resources",
            "--resources-path",
            str(folder),
            "--dapr-http-port",
            str(free_port()),
            "--dapr-grpc-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
        ]
    )


HEAD = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: c\n"
SUB_HEAD = "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\n"

#: (file content, the field the error must name, words of the reason) for what
#: tests/sidecar/api/test_resources.py and test_lifecycle.py do not already cover.
BAD_RESOURCES = {
    "name is a list": (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: [a]\n"
        "spec:\n  type: state.in-memory\n",
        "metadata.name",
        "string",
    ),
    "spec is a list": (HEAD + "spec: [1]\n", "spec", "expected a mapping"),
    "metadata item without name": (
        HEAD + "spec:\n  type: state.in-memory\n  metadata:\n  - value: x\n",
        "spec.metadata[0].name",
        "required",
    ),
    "metadata item is a string": (
        HEAD + "spec:\n  type: state.in-memory\n  metadata:\n  - just-a-string\n",
        "spec.metadata[0]",
        "",
    ),
    "ignoreErrors not a boolean": (
        HEAD + "spec:\n  type: state.in-memory\n  ignoreErrors: maybe\n",
        "spec.ignoreErrors",
        "true or false",
    ),
    "scopes not a list": (
        HEAD + "spec:\n  type: state.in-memory\nscopes: bad-resources\n",
        "scopes",
        "list",
    ),
    "subscription without topic": (
        SUB_HEAD + "spec:\n  pubsubname: p\n  routes:\n    default: /x\n",
        "topic",
        "required",
    ),
    "subscription rule without path": (
        SUB_HEAD + "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n"
        "      - match: 'event.type == \"x\"'\n",
        "path",
        "",
    ),
}


@pytest.mark.parametrize("name", BAD_RESOURCES)
def test_a_bad_resource_stops_the_sidecar_naming_file_and_field(tmp_path: Path, name: str) -> None:
    text, field, why = BAD_RESOURCES[name]
    (tmp_path / "broken.yaml").write_text(text)
    result = start_with(tmp_path)
    assert result.returncode != 0, result.stderr[-2000:]
    assert "broken.yaml" in result.stderr, result.stderr[-2000:]
    assert field in result.stderr, result.stderr[-2000:]
    assert why in result.stderr, result.stderr[-2000:]


def test_a_declared_rule_that_is_no_cel_stops_the_sidecar_at_start(tmp_path: Path) -> None:
    # As daprd, which compiles a declarative subscription's rules as it loads it: no app needed.
    (tmp_path / "pubsub.yaml").write_text(component("p", "pubsub.in-memory"))
    (tmp_path / "broken.yaml").write_text(
        SUB_HEAD + "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n"
        "      - match: 'event.type =='\n        path: /x\n"
    )
    result = start_with(tmp_path)
    assert result.returncode != 0, result.stderr[-2000:]
    assert "event.type ==" in result.stderr and "not valid CEL" in result.stderr, result.stderr


def test_duplicate_component_names_stop_the_sidecar(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(component("twice", "state.in-memory"))
    (tmp_path / "b.yaml").write_text(component("twice", "pubsub.in-memory"))
    result = start_with(tmp_path)
    assert result.returncode != 0
    assert "twice" in result.stderr and "duplicate" in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--dapr-http-port", "0"), ("--dapr-grpc-port", "port"), ("--app-port", "70000")],
)
def test_a_bad_port_flag_stops_the_sidecar_naming_it(tmp_path: Path, flag: str, value: str) -> None:
    (tmp_path / "c.yaml").write_text(component("mem", "state.in-memory"))
    result = run_sidecar(["--app-id", "bad-flags", "--resources-path", str(tmp_path), flag, value])
    assert result.returncode != 0
    assert flag in result.stderr and value in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("version: 1\napps:\n  - appDirPath: .\n    command: [x]\n    appPort: 70000\n", "appPort"),
        ("version: 1\napps:\n  - appDirPath: .\n    command: [x]\n    appPort: -1\n", "appPort"),
        (
            "version: 1\napps:\n  - appDirPath: .\n    command: [x]\n    daprHTTPPort: port\n",
            "daprHTTPPort",
        ),
        ("version: 1\napps:\n  - appDirPath: .\n    command: []\n", "apps[0].command"),
        ("version: 1\napps:\n  - appDirPath: .\n    command: [x]\n    env: [A]\n", "env"),
        ("version: 1\napps:\n  - 5\n", "apps[0]"),
        ("version: 1\n", "apps"),
        ("version: 1\napps: []\n", "apps"),
        ("version: two\napps:\n  - appDirPath: .\n    command: [x]\n", "version"),
        ("just a string\n", ""),
    ],
    ids=[
        "port-too-big",
        "port-negative",
        "port-not-a-number",
        "command-empty",
        "env-not-a-map",
        "app-not-a-map",
        "no-apps",
        "empty-apps",
        "version-not-a-number",
        "not-a-mapping",
    ],
)
def test_a_bad_run_file_stops_the_runner_naming_file_and_field(
    tmp_path: Path, text: str, field: str
) -> None:
    run_file = tmp_path / "dapr.yaml"
    run_file.write_text(text)
    result = run_sidecar(["run", "-f", str(run_file)], timeout=30)
    assert result.returncode != 0, result.stderr[-2000:]
    assert str(run_file) in result.stderr, result.stderr[-2000:]
    assert field in result.stderr, result.stderr[-2000:]
