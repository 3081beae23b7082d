"""W3C Trace Context (``traceparent``): read one from a request, or start a new trace.

Only version 00 is taken as sent; anything else, malformed or all-zero ids, starts a new trace,
as the specification asks of a receiver that cannot use the header (it is never an error).
"""

from __future__ import annotations

import re
import secrets

from starlette.requests import Request

_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def valid_traceparent(value: str | None) -> str | None:
    """``value`` when it is a usable version-00 ``traceparent``, else None."""
    if value is None:
        return None
    match = _VERSION_00.fullmatch(value.strip())
    if match is None or match[1] == _ZERO_TRACE or match[2] == _ZERO_PARENT:
        return None
    return match[0]


def new_traceparent() -> str:
    """A new sampled trace with a random parent id."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id(traceparent: str) -> str:
    """The trace id of a valid ``traceparent``."""
    return traceparent.split("-")[1]


async def request_traceparent(request: Request) -> str | None:
    """FastAPI dependency: the request's usable ``traceparent`` (an unusable one is ignored)."""
    return valid_traceparent(request.headers.get("traceparent"))
