"""Property-based fuzzing of job-orchestrator's OpenAPI against the real running service.

The schema is the one the app builds (checked equal to what the running process serves); every
operation gets positive and negative examples (schemathesis' default modes) sent over HTTP to
``python -m job_orchestrator`` with its real sidecar and Redis.
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
from tests.microservice_x.stack import get_json


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
