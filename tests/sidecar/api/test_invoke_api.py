"""Service invocation between two real sidecars, resolved through the local registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.conf import settings
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2

from tests.procs import free_port, raw_get
from tests.sidecar.api.conformance import APP_ID, Conformance
from tests.sidecar.api.conftest import Sidecar, TinyApp
from tests.sidecar.api.transports import Api, fails


@pytest.fixture(scope="module")
def caller(resources: Path, registry: Path, sidecar: Sidecar, workdir: Path) -> Iterator[Sidecar]:
    """A second sidecar without an app, calling the suite's app ``api-app``."""
    car = Sidecar("caller", resources, registry, log_dir=workdir).start()
    yield car
    car.stop()


def test_invoke_forwards_request_and_response(caller: Sidecar, app: TinyApp) -> None:
    response = httpx.post(
        f"{caller.http}/v1.0/invoke/api-app/method/echo/deep%2Fpath?x=1&y=two",
        content=b"payload",
        headers={"X-Custom": "abc", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-tiny-app"] == "yes"
    echo = response.json()
    assert echo["method"] == "POST"
    # daprd 1.18 takes the method from the decoded path (an escaped slash is a slash).
    assert echo["path"] == "/echo/deep/path"
    assert echo["query"] == "x=1&y=two"
    assert echo["body"] == "payload"
    assert echo["headers"]["x-custom"] == "abc"
    assert echo["headers"]["dapr-caller-app-id"] == "caller"


def test_a_header_sent_twice_arrives_twice_both_ways(caller: Sidecar, app: TinyApp) -> None:
    """Go keeps every value of a header, in both directions: two cookies stay two."""
    response = httpx.get(
        f"{caller.http}/v1.0/invoke/api-app/method/cookies",
        headers=[("X-Multi", "one"), ("X-Multi", "two")],
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    received = [v for k, v in response.json()["header_list"] if k == "x-multi"]
    assert received == ["one", "two"]


def test_invoke_passes_app_status_and_header_form(caller: Sidecar, app: TinyApp) -> None:
    teapot = httpx.get(f"{caller.http}/v1.0/invoke/api-app/method/status/418", timeout=10)
    assert teapot.status_code == 418
    assert teapot.json() == {"failed": True}
    by_header = httpx.put(
        f"{caller.http}/some/route", headers={"dapr-app-id": "api-app"}, content=b"h", timeout=10
    )
    assert by_header.status_code == 200
    assert by_header.json()["path"] == "/some/route"
    assert by_header.json()["method"] == "PUT"


def test_invoke_answers_with_body_and_encoding_that_agree(caller: Sidecar, app: TinyApp) -> None:
    """daprd's Go client to the app: a caller that accepts gzip gets the app's gzip answer as
    it was; for one that does not, daprd asks the app for gzip itself and hands back the plain
    body without Content-Encoding. It adds no Content-Type or Accept the caller did not send,
    names itself as Go does, and the answer carries one Date: the app's."""
    url = f"{caller.http}/v1.0/invoke/api-app/method/gzip"
    with httpx.Client(timeout=10) as client:
        passed = client.post(url, content=b"x", headers={"Accept-Encoding": "gzip"})
        assert passed.status_code == 200, passed.text
        assert passed.headers["content-encoding"] == "gzip"
        assert passed.json()["headers"]["accept-encoding"] == "gzip"  # decoded by httpx
        bare = client.build_request("POST", url, content=b"x")
        for name in ("accept-encoding", "accept", "user-agent"):
            del bare.headers[name]
        plain = client.send(bare)
    assert plain.status_code == 200, plain.text
    assert "content-encoding" not in plain.headers
    echo = json.loads(plain.content)
    assert echo["headers"]["accept-encoding"] == "gzip"
    assert echo["headers"]["user-agent"] == "Go-http-client/1.1"
    assert "content-type" not in echo["headers"] and "accept" not in echo["headers"]
    assert len(plain.headers.get_list("date")) == 1
    assert int(plain.headers["content-length"]) == len(plain.content)


def test_invoke_by_basic_credentials_as_daprd(caller: Sidecar, app: TinyApp) -> None:
    """``http://dapr-app-id:<app>@host/<method>``: the whole path is the method (even one that
    looks like an invocation path), and the app gets the Authorization header as it was sent
    (daprd forwards it; on the hop between sidecars it must not name the app a second time)."""
    auth = ("dapr-app-id", "api-app")
    for path in ("/orders/7", "/v1.0/invoke/someone-else/method/x"):
        answer = httpx.post(f"{caller.http}{path}", auth=auth, content=b"b", timeout=10)
        assert answer.status_code == 200, answer.text
        echo = answer.json()
        assert echo["path"] == path
        assert echo["headers"]["authorization"] == answer.request.headers["authorization"]
        assert "dapr-hop-authorization" not in echo["headers"]
    # Other credentials are the app's business: they pass through, and the path names the app.
    plain = httpx.get(
        f"{caller.http}/v1.0/invoke/api-app/method/secure", auth=("alice", "pw"), timeout=10
    )
    assert plain.status_code == 200, plain.text
    assert plain.json()["path"] == "/secure"
    assert plain.json()["headers"]["authorization"] == plain.request.headers["authorization"]
    nobody = httpx.get(f"{caller.http}/orders", auth=("dapr-app-id", ""), timeout=10)
    assert nobody.status_code == 404
    assert nobody.json()["errorCode"] == "ERR_DIRECT_INVOKE"


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        ("admin/../public", "/public"),  # traversal resolved before the app sees it
        ("admin%2F..%2Fpublic", "/public"),  # ... escaped or not
        ("../../etc", "/etc"),  # never above the app's root
        ("a//b/./c/", "/a/b/c"),
        ("a%20b+c", "/a%20b+c"),  # decoded, then escaped again on the way to the app
    ],
)
def test_invoke_normalizes_the_method_as_daprd(
    caller: Sidecar, app: TinyApp, sent: str, received: str
) -> None:
    """daprd 1.18's NormalizeMethod (pkg/messaging/method), through two sidecars. Sent raw:
    HTTP clients resolve ``..`` themselves."""
    status, body = raw_get(caller.http_port, f"/v1.0/invoke/api-app/method/{sent}".encode())
    assert (status, json.loads(body)["path"]) == (200, received), body
    status, body = raw_get(caller.http_port, f"/{sent}".encode(), {"dapr-app-id": "api-app"})
    assert (status, json.loads(body)["path"]) == (200, received), body


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        ("a%3Fb", 'method contains forbidden character: "a?b"'),
        ("a%23b", 'method contains forbidden character: "a#b"'),
        ("x/caf%C3%A9%0Ab", 'method contains control character at position 7: "x/café\\nb"'),
    ],
)
def test_invoke_refuses_methods_daprd_refuses(caller: Sidecar, sent: str, why: str) -> None:
    answer = httpx.get(f"{caller.http}/v1.0/invoke/api-app/method/{sent}", timeout=10)
    assert answer.status_code == 500
    assert answer.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: api-app, err: rpc error: code = InvalidArgument "
        f"desc = invalid method: {why}",
    }


def test_app_max_concurrency_holds_calls_to_the_app(
    caller: Sidecar, app: TinyApp, resources: Path, registry: Path, workdir: Path
) -> None:
    """``--app-max-concurrency 1``: invocations reach the app one at a time (daprd's semaphore
    in its app channel); without the flag they all go in together."""

    def peak_of_four(sidecar: Sidecar, target: str) -> int:
        url = f"{sidecar.http}/v1.0/invoke/{target}/method/slow/300"
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: httpx.get(url, timeout=20), range(4)))
        assert [a.status_code for a in answers] == [200] * 4
        return int(httpx.get(f"http://127.0.0.1:{app.port}/peak", timeout=10).json())

    httpx.get(f"http://127.0.0.1:{app.port}/peak", timeout=10)  # reset
    # Without the flag they overlap (all four, unless the machine delays one by 300 ms).
    assert peak_of_four(caller, "api-app") >= 2
    flags = ("--app-max-concurrency", "1")
    limited = Sidecar(
        "api-app-limited", resources, registry, app_port=app.port, log_dir=workdir, flags=flags
    ).start()
    try:
        assert peak_of_four(limited, limited.app_id) == 1
        # The metadata API shows the limit (daprd leaves it out when no limit is set).
        shown = httpx.get(f"{limited.http}/v1.0/metadata", timeout=10).json()
        assert shown["appConnectionProperties"]["maxConcurrency"] == 1
        unset = httpx.get(f"{caller.http}/v1.0/metadata", timeout=10).json()
        assert "maxConcurrency" not in unset["appConnectionProperties"]
    finally:
        limited.stop()


def test_app_answers_with_too_long_a_head_fail_as_under_daprd(
    caller: Sidecar, app: TinyApp
) -> None:
    """daprd's client to its app takes --read-buffer-size (4 KiB) of status line and headers."""
    fits = httpx.get(f"{caller.http}/v1.0/invoke/api-app/method/bighead/3500", timeout=10)
    assert fits.status_code == 200
    assert len(fits.headers["x-big"]) == 3500
    refused = httpx.get(f"{caller.http}/v1.0/invoke/api-app/method/bighead/4100", timeout=10)
    assert refused.status_code == 500
    assert refused.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "server response headers exceeded 4096 bytes" in refused.json()["message"]


def test_the_target_sidecars_read_buffer_bounds_its_apps_answers(
    caller: Sidecar, app: TinyApp, resources: Path, registry: Path, workdir: Path
) -> None:
    """With ``--read-buffer-size 16Ki`` on the target, a 10 KB answer header passes, whatever
    the caller's own limit: between daprds it travels over their internal gRPC hop."""
    flags = ("--read-buffer-size", "16Ki")
    roomy = Sidecar(
        "api-app-roomy", resources, registry, app_port=app.port, log_dir=workdir, flags=flags
    ).start()
    try:
        url = f"{caller.http}/v1.0/invoke/{roomy.app_id}/method/bighead/10000"
        answer = httpx.get(url, timeout=10)
        assert answer.status_code == 200, answer.text
        assert len(answer.headers["x-big"]) == 10000
    finally:
        roomy.stop()


def test_invoke_errors(caller: Sidecar) -> None:
    unknown = httpx.post(f"{caller.http}/v1.0/invoke/nobody/method/x", timeout=10)
    assert unknown.status_code == 500
    assert unknown.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "nobody" in unknown.json()["message"]
    no_app = httpx.get(f"{caller.http}/not/a/dapr/route", timeout=10)
    assert no_app.status_code == 404
    assert no_app.json()["errorCode"] == "ERR_DIRECT_INVOKE"


def test_invoke_through_sdk(caller: Sidecar, app: TinyApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", caller.http_port)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
    with DaprClient(address=caller.grpc_address) as client:
        reply = client.invoke_method("api-app", "orders", data=b'{"a":1}', http_verb="POST")
        assert reply.json()["path"] == "/orders"
        assert reply.json()["body"] == '{"a":1}'


def test_invoke_after_target_died(
    resources: Path, registry: Path, caller: Sidecar, workdir: Path
) -> None:
    """App down, then sidecar killed: both answer ERR_DIRECT_INVOKE at once, no hang."""
    doomed = Sidecar("doomed", resources, registry, app_port=free_port(), log_dir=workdir)
    doomed.start(wait="/v1.0/healthz/outbound")
    app_down = httpx.get(f"{caller.http}/v1.0/invoke/doomed/method/x", timeout=10)
    assert app_down.status_code == 500
    assert app_down.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "error invoking app channel" in app_down.json()["message"]
    doomed.proc.kill9()
    gone = httpx.get(f"{caller.http}/v1.0/invoke/doomed/method/x", timeout=10)
    assert gone.status_code == 500
    assert gone.json()["errorCode"] == "ERR_DIRECT_INVOKE"


def test_invoke_over_grpc_through_sdk(
    caller: Sidecar, app: TinyApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", caller.http_port)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
    monkeypatch.setattr(settings, "DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with (
        DaprClient(address=caller.grpc_address) as client,
        pytest.warns(DeprecationWarning, match="invoke_method with protocol gRPC"),
    ):
        reply = client.invoke_method(
            "api-app", "grpc-route", data=b"over grpc", content_type="text/plain", http_verb="PUT"
        )
        echo = reply.json()
        assert echo["method"] == "PUT"
        assert echo["path"] == "/grpc-route"
        assert echo["body"] == "over grpc"
        assert reply.content_type == "application/json"


async def test_invoke_through_every_client(api: Api, conformance: Conformance) -> None:
    """HTTP, the sync SDK and the aio SDK (both invoke over HTTP by default) alike."""
    status, echo = await api.invoke(APP_ID, "orders/eu", b'{"a":1}')
    assert status == 200
    assert (echo["method"], echo["path"], echo["body"]) == ("POST", "/orders/eu", '{"a":1}')
    assert echo["headers"]["dapr-caller-app-id"] == APP_ID
    teapot = await fails(api.invoke(APP_ID, "status/418", b""))
    assert teapot.status == "418"  # the app's status passes through
    unknown = await fails(api.invoke("nobody", "x", b""))
    assert (unknown.status, unknown.code) == ("500", "ERR_DIRECT_INVOKE")
    assert "nobody" in unknown.message


@pytest.mark.parametrize(
    ("status", "code", "text"),
    [
        (400, grpc.StatusCode.INTERNAL, "Bad Request"),
        (404, grpc.StatusCode.NOT_FOUND, "Not Found"),
        (408, grpc.StatusCode.CANCELLED, "Request Timeout"),
        (409, grpc.StatusCode.ALREADY_EXISTS, "Conflict"),
        (418, grpc.StatusCode.UNKNOWN, "I'm a teapot"),
        (500, grpc.StatusCode.UNKNOWN, "Internal Server Error"),
        (503, grpc.StatusCode.UNAVAILABLE, "Service Unavailable"),
    ],
)
def test_grpc_invoke_of_an_app_error_as_daprd_reports_it(
    caller: Sidecar, app: TinyApp, status: int, code: grpc.StatusCode, text: str
) -> None:
    """daprd's invokev1.ErrorFromHTTPResponseCode: its code map, Go's status text as message
    and ErrorInfo reason, the body cut to 63 bytes; the app's headers and dapr-http-status as
    header metadata (permanent HTTP headers under ``dapr-``)."""
    body = "é" + "x" * 70
    request = invoke_pb2.InvokeServiceRequest(
        id="api-app",
        message=common_pb2.InvokeRequest(
            method=f"status/{status}",
            http_extension=common_pb2.HTTPExtension(
                verb=common_pb2.HTTPExtension.Verb.GET, querystring=f"body={quote(body)}"
            ),
        ),
    )
    with grpc.insecure_channel(caller.grpc_address) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.InvokeService(request, timeout=10)
    error: Any = caught.value
    assert (error.code(), error.details()) == (code, text)
    headers = dict(error.initial_metadata())
    assert headers["dapr-http-status"] == str(status)
    assert headers["x-tiny-app"] == "yes"
    assert headers["dapr-content-type"] == "application/json"
    details = DaprGrpcError(error).status_details()
    assert details.error_info == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": text,
        "domain": "dapr.io",
        "metadata": {"http.code": str(status), "http.error_message": body.encode()[:63].decode()},
    }


def test_grpc_invoke_success_carries_the_apps_headers(caller: Sidecar, app: TinyApp) -> None:
    request = invoke_pb2.InvokeServiceRequest(
        id="api-app",
        message=common_pb2.InvokeRequest(
            method="echo",
            http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.Verb.GET),
        ),
    )
    with grpc.insecure_channel(caller.grpc_address) as channel:
        reply, call = dapr_pb2_grpc.DaprStub(channel).InvokeService.with_call(request, timeout=10)
    headers = dict(call.initial_metadata())
    assert headers["dapr-http-status"] == "200"
    assert headers["x-tiny-app"] == "yes"
    assert reply.content_type == "application/json"
    assert json.loads(reply.data.value)["path"] == "/echo"
