"""Property-based fuzzing of microservice-x's OpenAPI against the real running service.

POST /jobs goes all the way: the service invokes the real orchestrator through both sidecars, so
whatever the orchestrator refuses must come back as a 4xx problem, never a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis

from microservice_x.app import create_app
from microservice_x.settings import Settings
from tests.fuzz.checks import FUZZ_CHECKS, FUZZ_SETTINGS
from tests.fuzz.conftest import Stack
from tests.microservice_x.stack import get_json


def _schema_document() -> dict[str, Any]:
    # Building the app connects nothing (the lifespan does), so this is safe at collection.
    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


SCHEMA = schemathesis.openapi.from_dict(_schema_document())


def test_the_running_service_serves_the_schema_fuzzed_here(stack: Stack) -> None:
    assert get_json(f"{stack.mx.url}/openapi.json") == _schema_document()


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_microservice_x_api_conforms(case: schemathesis.Case, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.mx.url, timeout=15, **FUZZ_CHECKS)


@pytest.fixture(autouse=True)
def _stack_alive(stack: Stack) -> Iterator[None]:
    yield
    stack.check_alive()


def test_every_documented_error_is_problem_json() -> None:
    for path, operations in _schema_document()["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    content = set(response.get("content", {}))
                    assert content <= {"application/problem+json"}, (method, path, status, content)
