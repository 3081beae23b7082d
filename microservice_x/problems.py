"""The one place errors become HTTP answers: RFC 9457 `application/problem+json`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from dapr_support import request_rules
from dapr_support.http_methods import allowed_methods
from microservice_x.errors import ServiceError

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
UNSUPPORTED_MEDIA_TYPE = HTTPStatus.UNSUPPORTED_MEDIA_TYPE.phrase


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    if exc.status >= 500:
        logger.warning("%s %s: %s: %s", request.method, request.url.path, exc.title, exc.detail)
    return problem(
        exc.status,
        exc.title,
        exc.detail,
        instance=request.url.path,
        headers=headers,
        **exc.extensions(),
    )


def _unsupported_media(request: Request, exc: RequestValidationError) -> JSONResponse | None:
    """415 when a body was refused only because it was not sent as JSON."""
    detail = request_rules.not_json_detail(exc.errors(), request.headers.get("content-type"))
    if detail is None:
        return None
    return problem(
        415,
        UNSUPPORTED_MEDIA_TYPE,
        detail,
        instance=request.url.path,
        headers={"Accept-Post": "application/json"},
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    unsupported = _unsupported_media(request, exc)
    if unsupported is not None:
        return unsupported
    return _invalid(request, [_field_error(err) for err in exc.errors()])


def _field_error(err: dict[str, Any]) -> dict[str, str]:
    syntax = request_rules.json_syntax_message(err)
    if syntax is not None:
        return {"field": "body", "message": syntax}
    return {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}


def _invalid(request: Request, errors: list[dict[str, str]]) -> JSONResponse:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return problem(422, "Invalid request", detail, instance=request.url.path, errors=errors)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem(
        500,
        "Internal error",
        "unexpected error; the service log has the details",
        instance=request.url.path,
    )


def install_problem_handlers(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """Every error as problem+json; ``routes`` are the app's, for the ``Allow`` of a 405."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot even decode (e.g. not UTF-8): a validation
            # error of the body like any other, so 422, as the orchestrator answers.
            return _invalid(request, [{"field": "body", "message": "the body is not valid JSON"}])
        detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(routes, request.scope)
        return problem(
            exc.status_code,
            _phrase(exc.status_code),
            detail,
            instance=request.url.path,
            headers=headers or None,
        )

    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, _unexpected)
