"""Property-based fuzzing of job-orchestrator's OpenAPI against the real running service.

The schema is the one the app builds (checked equal to what the running process serves); every
operation gets positive and negative examples (schemathesis' default modes) sent over HTTP to
``python -m job_orchestrator`` with its real sidecar and Redis. Nothing is excluded: the
Server-Sent Events route is fuzzed too, since a generated job id never names an existing job it
answers 404 before any stream starts (streams of real jobs are tested in tests/job_orchestrator).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis

from job_orchestrator.app import create_app
from job_orchestrator.settings import Settings
from tests.fuzz.checks import FUZZ_CHECKS, FUZZ_SETTINGS
from tests.fuzz.conftest import Stack
from tests.microservice_x.stack import get_json, http


def _schema_document() -> dict[str, Any]:
    # Building the app connects nothing (the lifespan does), so this is safe at collection.
    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


SCHEMA = schemathesis.openapi.from_dict(_schema_document())


def test_the_running_service_serves_the_schema_fuzzed_here(stack: Stack) -> None:
    assert get_json(f"{stack.orchestrator.url}/openapi.json") == _schema_document()


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_orchestrator_api_conforms(case: schemathesis.Case, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.orchestrator.url, timeout=10, **FUZZ_CHECKS)


@pytest.fixture(autouse=True)
def _stack_alive(stack: Stack) -> Iterator[None]:
    yield
    stack.check_alive()


# The failures the fuzzer finds, pinned as plain examples so each has its own name.


def test_a_boolean_timeout_is_refused(stack: Stack) -> None:
    # The schema says number; pydantic's lax mode turns `false` into 0.0 and `"2"` into 2.0.
    for value in (False, "2"):
        status, headers, body = http(
            "POST",
            f"{stack.orchestrator.url}/Jobs/StartJobWithTimeout",
            {"type": "wait", "input": {"seconds": 0.01}, "timeoutSeconds": value},
        )
        assert status == 422, (value, status, body)
        assert headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/jobs", {"GET", "POST"}),
        ("/jobs/x", {"GET", "DELETE"}),
        ("/jobs/x/result", {"GET", "DELETE"}),
    ],
)
def test_a_405_names_every_method_of_the_path(stack: Stack, path: str, methods: set[str]) -> None:
    # RFC 9110 15.5.6: Allow lists the methods the resource supports, not one route's.
    status, headers, _ = http("PATCH", stack.orchestrator.url + path)
    assert status == 405
    allowed = {m.strip() for m in headers.get("allow", "").split(",")}
    assert methods <= allowed, headers.get("allow")


def test_every_documented_error_is_problem_json() -> None:
    for path, operations in _schema_document()["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    content = set(response.get("content", {}))
                    assert content <= {"application/problem+json"}, (method, path, status, content)
