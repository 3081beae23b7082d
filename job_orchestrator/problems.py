"""Every error as RFC 9457 ``application/problem+json``, mapped in this one place."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from dapr_support import request_rules
from dapr_support.http_methods import allowed_methods
from job_orchestrator.auth import CHALLENGE
from job_orchestrator.errors import (
    NotReady,
    OrchestratorError,
    RequestInProgress,
    StoreUnavailable,
    TooManyWaiters,
    Unauthorized,
)
from job_orchestrator.handlers import InvalidJobInput, UnknownJobType

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, instance: str) -> dict[str, Any]:
        return {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            **self.extra,
        }


def _field_name(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _invalid_field(err: dict[str, Any], prefix: str) -> dict[str, str]:
    syntax = request_rules.json_syntax_message(err)
    if syntax is not None:
        return {"field": "body", "message": syntax}
    return {"field": prefix + _field_name(err.get("loc", ())), "message": str(err.get("msg", ""))}


def validation_problem(errors: list[dict[str, Any]], prefix: str = "") -> Problem:
    """422 naming each invalid field, e.g. ``timeoutSeconds: Input should be a valid number``."""
    fields = [_invalid_field(err, prefix) for err in errors]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid request"
    return Problem(422, "Request validation failed", detail, extra={"errors": fields})


def unsupported_media(exc: RequestValidationError, content_type: str | None) -> Problem | None:
    """415 when a body was refused only because it was not sent as JSON."""
    detail = request_rules.not_json_detail(exc.errors(), content_type)
    if detail is None:
        return None
    return Problem(415, "Unsupported Media Type", detail, {"Accept-Post": "application/json"})


def problem_for(exc: BaseException, retry_after: int) -> Problem:
    """The problem a client sees for ``exc``; unknown errors never leak a stack trace."""
    if isinstance(exc, StoreUnavailable | RequestInProgress | TooManyWaiters | NotReady):
        return Problem(exc.status, exc.title, exc.detail, {"Retry-After": str(retry_after)})
    if isinstance(exc, Unauthorized):
        return Problem(exc.status, exc.title, exc.detail, {"WWW-Authenticate": CHALLENGE})
    if isinstance(exc, OrchestratorError):
        return Problem(exc.status, exc.title, exc.detail)
    if isinstance(exc, UnknownJobType):
        return Problem(
            422, "Unknown job type", str(exc), extra={"field": "type", "knownTypes": exc.known}
        )
    if isinstance(exc, InvalidJobInput):
        problem = validation_problem(exc.errors, prefix="input.")
        return Problem(
            422, f"Invalid input for job type {exc.job_type!r}", problem.detail, extra=problem.extra
        )
    if isinstance(exc, RequestValidationError):
        return validation_problem([dict(e) for e in exc.errors()])
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 400:
        # FastAPI's answer to a body it cannot even decode (e.g. not UTF-8): a validation error
        # of the body like any other, so 422 as documented.
        return validation_problem([{"loc": ("body",), "msg": "the body is not valid JSON"}])
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return Problem(exc.status_code, detail, detail, dict(exc.headers or {}))
    return Problem(500, "Internal error", "the orchestrator failed unexpectedly; see its log")


def problem_response(problem: Problem, instance: str) -> JSONResponse:
    """``problem`` as the application/problem+json response for ``instance`` (the path)."""
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_JSON,
    )


#: The OpenAPI schema of every documented error answer.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Validation errors, one per field.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "knownTypes": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["type", "title", "status", "detail"],
}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make every documented 4xx/5xx answer of ``schema`` application/problem+json only.

    FastAPI documents its own 422 body and adds application/json to every extra response;
    the app answers neither way.
    """
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status.startswith(("4", "5")):
                    response["content"] = content
    return schema


def install(app: FastAPI, retry_after: int, routes: Sequence[BaseRoute]) -> None:
    """Register the handlers that turn every exception into problem+json.

    ``routes`` are the app's routes, for the ``Allow`` header of a 405.
    """

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        problem = None
        if isinstance(exc, RequestValidationError):
            problem = unsupported_media(exc, request.headers.get("content-type"))
        problem = problem or problem_for(exc, retry_after)
        if problem.status == 405:
            problem.headers["Allow"] = allowed_methods(routes, request.scope)
        if problem.status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return problem_response(problem, request.url.path)

    for exc_type in (
        OrchestratorError,
        UnknownJobType,
        InvalidJobInput,
        RequestValidationError,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(exc_type, handle)
