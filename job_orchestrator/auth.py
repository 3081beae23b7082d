"""Who is calling: optional API keys bound to owners (public API), and the sidecar's app token.

With no keys configured every caller sees every job, as before. With keys, a request must carry
one (``X-API-Key`` or ``Authorization: Bearer``) and only ever sees its owner's jobs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from job_orchestrator.errors import Unauthorized

API_KEY_HEADER = "X-API-Key"
#: The challenge of every 401 (RFC 9110 11.6.1): both ways a key may be sent.
CHALLENGE = f'Bearer realm="job-orchestrator", ApiKey header="{API_KEY_HEADER}"'
#: daprd sends APP_API_TOKEN to its app in this header (pkg/channel/http).
APP_TOKEN_HEADER = "dapr-api-token"
_PROBLEM_JSON = "application/problem+json"


def parse_api_keys(text: str) -> dict[str, str]:
    """``key=owner`` entries separated by commas or lines (``#`` starts a comment line)."""
    keys: dict[str, str] = {}
    for raw in text.replace(",", "\n").splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        key, sep, owner = entry.partition("=")
        key, owner = key.strip(), owner.strip()
        if not sep or not key or not owner:
            raise ValueError("each API key entry must read key=owner")
        if key in keys:
            raise ValueError("an API key is listed twice")
        keys[key] = owner
    return keys


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """Key -> owner. Looked up by digest, so lookups take no time that depends on a near-miss."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._owners = {_digest(key): owner for key, owner in keys.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._owners)

    def owner(self, api_key: str | None, bearer: str | None) -> str | None:
        """The caller's owner; None when no keys are configured (the caller sees everything).

        Raises Unauthorized when keys are configured and neither credential is one of them.
        """
        if not self._owners:
            return None
        for given in (api_key, bearer):
            if given:
                owner = self._owners.get(_digest(given))
                if owner is not None:
                    return owner
        raise Unauthorized(
            f"a valid API key is required ({API_KEY_HEADER} header or Authorization: Bearer)"
        )

    def owner_from_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """``owner`` for raw ASGI headers, read as FastAPI's security schemes read them (the
        first of each header): the paths served below FastAPI check keys as the routes do."""
        if not self._owners:
            return None
        api_key = authorization = None
        for name, value in headers:
            if name == b"x-api-key" and api_key is None:
                api_key = value.decode("latin-1")
            elif name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
        bearer = None
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer":
                bearer = credentials.strip()
        return self.owner(api_key, bearer)


_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="An API key; you see and manage only the jobs of the owner it is bound to.",
    auto_error=False,
)
_bearer_scheme = HTTPBearer(
    scheme_name="Bearer",
    description="The same API key as a bearer token.",
    auto_error=False,
)


async def caller_owner(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
) -> str | None:
    keys: ApiKeys = request.app.state.api_keys
    return keys.owner(api_key, bearer.credentials if bearer is not None else None)


#: The owner whose jobs this request may touch; None: keys are off, every job.
CallerDep = Annotated[str | None, Depends(caller_owner)]


def owns(job_owner: str | None, caller: str | None) -> bool:
    return caller is None or job_owner == caller


def scoped_idempotency_key(key: str | None, caller: str | None) -> str | None:
    """Idempotency-Keys of different owners never meet (nor tell one another's apart)."""
    if key is None or caller is None:
        return key
    return f"{caller}\n{key}"


def check_app_token(expected: str | None, given: str) -> None:
    """Sidecar-only routes: with APP_API_TOKEN set, the caller must be our sidecar."""
    if expected and not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(f"this route is for the Dapr sidecar only ({APP_TOKEN_HEADER})")


async def require_app_token(request: Request) -> None:
    """``check_app_token`` as a FastAPI dependency."""
    check_app_token(
        request.app.state.settings.app_api_token, request.headers.get(APP_TOKEN_HEADER, "")
    )


def document_security(schema: dict[str, Any], enabled: bool) -> dict[str, Any]:
    """OpenAPI security as configured: Swagger's Authorize with keys, nothing without them."""
    schemes = schema.get("components", {}).get("securitySchemes", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "security" not in operation:
                continue
            if not enabled:
                del operation["security"]
                continue
            operation.setdefault("responses", {})["401"] = {
                "description": "Missing or invalid API key",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": {_PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
    if not enabled and schemes:
        del schema["components"]["securitySchemes"]
    return schema
