"""Which requests the long-poll fast path takes."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.types import Message

from job_orchestrator.asgi import send_json
from job_orchestrator.longpoll import long_poll_target


def scope(path: str, query: bytes, method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query}


@pytest.mark.parametrize(
    ("path", "query", "method", "expected"),
    [
        ("/jobs/abc", b"wait=10", "GET", ("abc", 10.0)),
        ("/jobs/abc", b"x=1&wait=0.5", "GET", ("abc", 0.5)),
        ("/jobs/abc", b"", "GET", None),
        ("/jobs/abc", b"wait=0", "GET", None),
        ("/jobs/abc", b"wait=soon", "GET", None),
        ("/jobs/abc", b"wait=nan", "GET", None),
        ("/jobs/abc", b"wait=10", "DELETE", None),
        ("/jobs/abc/result", b"wait=10", "GET", None),
        ("/jobs/", b"wait=10", "GET", None),
        ("/jobs", b"wait=10", "GET", None),
    ],
)
def test_long_poll_target(
    path: str, query: bytes, method: str, expected: tuple[str, float] | None
) -> None:
    assert long_poll_target(scope(path, query, method)) == expected


async def test_a_long_poll_answer_is_never_invalid_json() -> None:
    """NaN refused as Starlette's JSONResponse refuses it, before anything is sent."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await send_json(send, 200, {"progress": 1.5})
    assert sent[-1]["body"] == b'{"progress":1.5}'
    sent.clear()
    with pytest.raises(ValueError, match="JSON compliant"):
        await send_json(send, 200, {"progress": float("nan")})
    assert sent == []
