"""microservice-x's OpenAPI document as Swagger shows it: each error status documented with
examples of that status, and only the statuses a route can answer.

Building the app connects nothing (its lifespan does), so /openapi.json is read in-process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from microservice_x.app import create_app
from microservice_x.settings import Settings

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def schema() -> AsyncIterator[dict[str, Any]]:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mx") as client:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        yield response.json()


def error_responses(schema: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, status, response) of every documented 4xx/5xx answer."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    yield method, path, status, response


def examples(response: dict[str, Any]) -> list[dict[str, Any]]:
    documented = response["content"][PROBLEM]["examples"]
    return [example["value"] for example in documented.values()]


async def test_every_error_example_is_a_problem_of_its_own_status(schema: dict[str, Any]) -> None:
    seen = 0
    for method, path, status, response in error_responses(schema):
        where = (method, path, status)
        values = examples(response)
        assert values, where
        for value in values:
            seen += 1
            if status == "4XX":
                assert 400 <= value["status"] < 500, where
                # An explicitly documented status is shown under its own code.
                assert str(value["status"]) not in schema["paths"][path][method]["responses"]
            else:
                assert value["status"] == int(status), where
            assert value["type"] == "about:blank", where
            assert value["title"] and value["detail"], where
            assert value["instance"].startswith(path.split("{")[0]), where
            if value["status"] != 404:
                assert value["title"] != "Job not found", where
        if status != "404":
            assert "not found" not in json.dumps(response).lower(), where
    assert seen >= 15


async def test_the_problem_schema_has_no_example_of_one_status(schema: dict[str, Any]) -> None:
    """Swagger would show a schema's field examples under every status that uses it."""
    for where in error_responses(schema):
        problem = where[3]["content"][PROBLEM]["schema"]
        assert "examples" not in json.dumps(problem), where[:3]


def parameters(operation: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The fields a validation error of ``operation`` may name, as problems.py names them."""
    names = {f"{p['in']}.{p['name']}" for p in operation.get("parameters", [])}
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        model = body["schema"]["$ref"].rsplit("/", 1)[-1]
        names |= {f"body.{name}" for name in schema["components"]["schemas"][model]["properties"]}
        names.add("body")  # the body as a whole: not JSON at all
    return names


async def test_422_examples_name_a_field_of_their_route(schema: dict[str, Any]) -> None:
    routes_with_422 = set()
    for method, path, status, response in error_responses(schema):
        if status != "422":
            continue
        routes_with_422.add((method, path))
        fields = parameters(schema["paths"][path][method], schema)
        named = [e["field"] for value in examples(response) for e in value.get("errors", [])]
        assert named, (method, path)
        assert set(named) <= fields, (method, path, named, fields)
        for value in examples(response):
            for error in value.get("errors", []):
                assert f"{error['field']}: {error['message']}" in value["detail"]
    assert routes_with_422 == {("post", "/jobs"), ("get", "/jobs"), ("get", "/dead-letters")}


async def test_only_statuses_a_route_answers_are_documented(schema: dict[str, Any]) -> None:
    def documented(method: str, path: str) -> set[str]:
        return set(schema["paths"][path][method]["responses"])

    # The body's and the orchestrator's refusals each have their own status and examples.
    assert {"409", "413", "415", "422", "502", "503"} <= documented("post", "/jobs")
    # Any job id is looked up (404 if no event named it): the path is never invalid. 500: its
    # stored view does not decode.
    assert documented("get", "/jobs/{job_id}") == {"200", "404", "500", "503"}
    assert documented("get", "/dead-letters") == {"200", "422", "500", "503"}
    assert documented("get", "/readyz") == {"200", "503"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_retry_after_and_accept_post_are_documented(schema: dict[str, Any]) -> None:
    for method, path, status, response in error_responses(schema):
        headers = set(response.get("headers", {}))
        if status == "503":
            assert "Retry-After" in headers, (method, path)
        if status == "415":
            assert "Accept-Post" in headers, (method, path)
    assert any(status == "415" for _, _, status, _ in error_responses(schema))
