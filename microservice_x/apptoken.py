"""daprd's app token: with APP_API_TOKEN set, only the sidecar may call the event routes."""

from __future__ import annotations

import hmac

from fastapi import Request

from microservice_x.errors import Unauthorized

#: The header daprd sends APP_API_TOKEN in, on every call to its app.
APP_TOKEN_HEADER = "dapr-api-token"


async def require_app_token(request: Request) -> None:
    """Refuse a delivery that lacks our sidecar's token; public routes do not use this."""
    expected: str | None = request.app.state.settings.app_api_token
    if not expected:
        return
    given = request.headers.get(APP_TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(f"this route is for the Dapr sidecar only ({APP_TOKEN_HEADER})")
