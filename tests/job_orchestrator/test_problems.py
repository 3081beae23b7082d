"""Every error maps to an RFC 9457 problem with a useful detail."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from job_orchestrator.errors import (
    IdempotencyKeyReused,
    JobConflict,
    JobNotFound,
    RequestInProgress,
    StoreUnavailable,
)
from job_orchestrator.handlers import InvalidJobInput, UnknownJobType
from job_orchestrator.problems import problem_for


def test_not_found_conflict_and_idempotency() -> None:
    assert problem_for(JobNotFound("abc"), 1).status == 404
    assert "abc" in problem_for(JobNotFound("abc"), 1).detail
    assert problem_for(JobConflict("already Completed"), 1).status == 409
    assert problem_for(IdempotencyKeyReused("other body"), 1).status == 422


def test_store_unavailable_is_503_with_retry_after() -> None:
    problem = problem_for(StoreUnavailable("sidecar down"), 3)
    assert problem.status == 503
    assert problem.headers == {"Retry-After": "3"}


def test_concurrent_idempotent_request_is_409_with_retry_after() -> None:
    problem = problem_for(RequestInProgress("still creating"), 2)
    assert (problem.status, problem.headers) == (409, {"Retry-After": "2"})


def test_unknown_type_names_field_and_known_types() -> None:
    problem = problem_for(UnknownJobType("nope", ["wait"]), 1)
    assert problem.status == 422
    assert problem.extra == {"field": "type", "knownTypes": ["wait"]}


def test_validation_names_the_field() -> None:
    exc = RequestValidationError(
        [{"loc": ("body", "timeoutSeconds"), "msg": "Input should be a valid number"}]
    )
    problem = problem_for(exc, 1)
    assert problem.status == 422
    assert problem.detail == "timeoutSeconds: Input should be a valid number"
    bad_input = InvalidJobInput("wait", [{"loc": ("seconds",), "msg": "too big"}])
    assert problem_for(bad_input, 1).detail == "input.seconds: too big"


def test_an_undecodable_body_is_a_validation_error() -> None:
    problem = problem_for(HTTPException(400, "There was an error parsing the body"), 1)
    assert (problem.status, problem.detail) == (422, "body: the body is not valid JSON")


def test_unexpected_errors_hide_internals() -> None:
    problem = problem_for(RuntimeError("secret stack detail"), 1)
    assert problem.status == 500
    assert "secret" not in problem.detail
