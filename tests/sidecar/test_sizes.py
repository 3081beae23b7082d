"""daprd's size flags: resource quantities, the deprecated KB / MB forms, and their precedence."""

from __future__ import annotations

import pytest
from starlette.types import Message, Receive, Scope, Send

from sidecar.config import parse_config
from sidecar.headlimit import MaxHeadSize, head_size
from sidecar.quantity import QuantityError, parse_bytes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4Mi", 4 << 20),
        ("16Ki", 16 << 10),
        ("1.5Ki", 1536),
        ("2k", 2000),
        ("1M", 1_000_000),
        ("1e3", 1000),
        ("2E6", 2_000_000),
        ("4096", 4096),
        ("+8", 8),
        ("0", 0),
        ("-1Mi", -(1 << 20)),
        ("3000m", 3),
    ],
)
def test_quantities(text: str, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("4MB", "must match the regular expression"),
        ("4iM", "unable to parse quantity's suffix"),
        ("4 Mi", "must match the regular expression"),
        ("4Mi\n", "must match the regular expression"),
        ("Mi", "must match the regular expression"),
        ("1.2.3", "must match the regular expression"),
        ("", "must match the regular expression"),
        ("1500m", "cannot get bytes from resource quantity value '1500m'"),
        ("0.5", "cannot get bytes"),
    ],
)
def test_quantities_daprd_refuses(text: str, reason: str) -> None:
    with pytest.raises(QuantityError, match=reason.replace(".", r"\.")):
        parse_bytes(text)


def config(*flags: str) -> tuple[int, int]:
    parsed = parse_config(["--app-id", "a", *flags], {})
    return parsed.max_body_bytes, parsed.read_buffer_bytes


def test_size_flags_as_daprd_reads_them() -> None:
    assert config() == (4 << 20, 4 << 10)
    assert config("--max-body-size", "16Mi", "--read-buffer-size", "64Ki") == (16 << 20, 64 << 10)
    # The deprecated flags count in MB and KB ...
    assert config("--dapr-http-max-request-size", "8", "--dapr-http-read-buffer-size", "32") == (
        8 << 20,
        32 << 10,
    )
    # ... lose to the quantity flags ...
    both = ("--dapr-http-max-request-size", "8", "--max-body-size", "1Mi")
    assert config(*both)[0] == 1 << 20
    # ... and are taken as they are at 0 or below (0: no body limit).
    assert config("--dapr-http-max-request-size", "0")[0] == 0
    with pytest.raises(SystemExit):
        config("--max-body-size", "4MB")


def test_head_size_counts_the_request_line_and_headers_as_sent() -> None:
    scope = {
        "method": "GET",
        "path": "/v1.0/state/s/k",
        "raw_path": b"/v1.0/state/s/k",
        "query_string": b"a=1",
        "http_version": "1.1",
        "headers": [(b"host", b"x"), (b"x-long", b"y" * 10)],
    }
    sent = b"GET /v1.0/state/s/k?a=1 HTTP/1.1\r\nhost: x\r\nx-long: yyyyyyyyyy\r\n\r\n"
    assert head_size(scope) == len(sent)


async def test_a_forwarded_invocation_is_not_held_to_the_head_limit_again() -> None:
    """The caller's sidecar held the request to its limit; the hop between sidecars (daprd's
    internal gRPC call) adds headers of its own and must not be refused for them."""
    reached: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"].encode())

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    limited = MaxHeadSize(app, 1024)  # 1 KiB + Go's 4 KiB slack
    big = [(b"x-big", b"a" * 5200)]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1.0/invoke/b/method/m",
        "query_string": b"",
        "http_version": "1.1",
    }
    await limited({**scope, "headers": big}, receive, send)
    assert (reached, sent[0]["status"]) == ([], 431)
    await limited({**scope, "headers": [*big, (b"dapr-caller-app-id", b"a")]}, receive, send)
    assert reached == [b"/v1.0/invoke/b/method/m"]
