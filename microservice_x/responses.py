"""The error answers each route documents in OpenAPI: problem+json, with examples that fit the
status they are shown under (Swagger shows them as the body of that status)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from microservice_x.errors import (
    CorruptRecord,
    InvalidRequest,
    JobNotFound,
    NotReady,
    OrchestratorBadAnswer,
    OrchestratorRefusedUs,
    OrchestratorUnavailable,
    StoreError,
)
from microservice_x.index import CURSOR_PATTERN
from microservice_x.problems import PROBLEM_JSON, UNSUPPORTED_MEDIA_TYPE

#: The job id the examples show.
JOB_ID = "0b9f7a3c5d2e4f61a8b7c6d5e4f3a2b1"


class Problem(BaseModel):
    """An RFC 9457 problem: the body of every error this API answers."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "examples": [2]},
    }
}
ACCEPT_POST = {
    "Accept-Post": {
        "description": "The media type the body must be sent as",
        "schema": {"type": "string", "examples": ["application/json"]},
    }
}


def example(
    summary: str, status: int, title: str, detail: str, instance: str, **extensions: Any
) -> dict[str, Any]:
    """A named OpenAPI example of a problem this API answers."""
    value = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return {"summary": summary, "value": {**value, "instance": instance, **extensions}}


def invalid_field(summary: str, field: str, message: str, instance: str) -> dict[str, Any]:
    """A 422 example as problems.py answers a request that failed validation."""
    errors = [{"field": field, "message": message}]
    return example(
        summary, 422, InvalidRequest.title, f"{field}: {message}", instance, errors=errors
    )


def problem_response(
    description: str, *examples: dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One entry of a route's OpenAPI ``responses``: problem+json with its examples (Swagger
    offers them in a list, by summary)."""
    named = {re.sub(r"[^a-z0-9]+", "-", e["summary"].lower()).strip("-"): e for e in examples}
    content = {"schema": Problem.model_json_schema(), "examples": named}
    response: dict[str, Any] = {"description": description, "content": {PROBLEM_JSON: content}}
    if headers:
        response["headers"] = headers
    return response


def store_down(instance: str) -> dict[str, Any]:
    detail = f"reading 'job:{JOB_ID}' from 'statestore': connection refused"
    return problem_response(
        "State store unavailable; retry after Retry-After",
        example("The state store does not answer", 503, StoreError.title, detail, instance),
        headers=RETRY_AFTER,
    )


def corrupt(key: str, instance: str, why: str) -> dict[str, Any]:
    """A stored record this service cannot read: no retry fixes it (the operator must)."""
    return problem_response(
        "A stored record does not decode (written by something else, or damaged); retrying "
        "does not help",
        example(
            "Unreadable stored record",
            500,
            CorruptRecord.title,
            f"stored record {key!r} is {why}",
            instance,
        ),
    )


def _relayed(summary: str, status: int, title: str, detail: str, **ext: Any) -> dict[str, Any]:
    return example(f"{summary} (the orchestrator's answer)", status, title, detail, "/jobs", **ext)


START_JOB: dict[int | str, dict[str, Any]] = {
    409: problem_response(
        "The orchestrator's refusal, relayed: a request with the same Idempotency-Key is still "
        "being processed, or the job it started was deleted",
        _relayed(
            "Same Idempotency-Key in progress",
            409,
            "Request with this Idempotency-Key in progress",
            "a request with this Idempotency-Key is still being processed; retry in a moment",
        ),
        _relayed(
            "The key's job was deleted",
            409,
            "Job of this Idempotency-Key deleted",
            f"the job this Idempotency-Key created ({JOB_ID}) was deleted; "
            "use a new key to start another job",
        ),
    ),
    413: problem_response(
        "The orchestrator's refusal, relayed: the body or the job input is over its size limit",
        _relayed(
            "Job input too large",
            413,
            "Job input too large",
            "the job input is 70000 bytes of JSON; the limit is 65536",
        ),
        _relayed(
            "Body too large",
            413,
            "Request body too large",
            "the request body is larger than 262144 bytes",
        ),
    ),
    415: problem_response(
        "The body was not sent as application/json",
        example(
            "Body sent as text/plain",
            415,
            UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json (it came with 'text/plain')",
            "/jobs",
        ),
        headers=ACCEPT_POST,
    ),
    422: problem_response(
        "Invalid body, owner or Idempotency-Key; or the orchestrator's refusal of the job, "
        "relayed (unknown type, invalid input, Idempotency-Key reused with another body)",
        invalid_field(
            "Invalid field", "body.type", "String should have at least 1 character", "/jobs"
        ),
        invalid_field(
            "Not JSON",
            "body",
            "the body is not valid JSON (Expecting ',' delimiter at character 10)",
            "/jobs",
        ),
        invalid_field("Body not UTF-8", "body", "the body is not valid JSON", "/jobs"),
        example(
            "Another owner",
            422,
            InvalidRequest.title,
            "owner must be 'microservice-x' (or left out), not 'other-service'",
            "/jobs",
        ),
        invalid_field(
            "Two Idempotency-Keys",
            "header.Idempotency-Key",
            "Send one Idempotency-Key, not several",
            "/jobs",
        ),
        _relayed(
            "Unknown job type",
            422,
            "Unknown job type",
            "unknown job type 'sleep'; known types: wait",
            field="type",
            knownTypes=["wait"],
        ),
    ),
    502: problem_response(
        "The orchestrator answered without a job, or refused microservice-x's own credentials "
        "(its ORCHESTRATOR_API_KEY)",
        example(
            "ORCHESTRATOR_API_KEY bound to another owner",
            502,
            OrchestratorRefusedUs.title,
            "'job-orchestrator' answered 403: your API key is bound to owner 'someone-else', "
            "not 'microservice-x'; check microservice-x's ORCHESTRATOR_API_KEY (set, and bound "
            "to owner 'microservice-x')",
            "/jobs",
        ),
        example(
            "No job id in the answer",
            502,
            OrchestratorBadAnswer.title,
            "'job-orchestrator' answered 202 without a job id: b'{\"status\":\"New\"}'",
            "/jobs",
        ),
    ),
    503: problem_response(
        "Sidecar or orchestrator unavailable; retry after Retry-After",
        example(
            "Dapr cannot reach the orchestrator",
            503,
            OrchestratorUnavailable.title,
            "Dapr could not invoke 'job-orchestrator': ERR_DIRECT_INVOKE: failed to invoke, "
            "id: job-orchestrator, err: couldn't find service: job-orchestrator",
            "/jobs",
        ),
        headers=RETRY_AFTER,
    ),
}

LIST_JOBS: dict[int | str, dict[str, Any]] = {
    422: problem_response(
        "Invalid query parameter",
        invalid_field(
            "limit out of range",
            "query.limit",
            "Input should be greater than or equal to 1",
            "/jobs",
        ),
        invalid_field(
            "Not a cursor of a Link header",
            "query.cursor",
            f"String should match pattern '{CURSOR_PATTERN}'",
            "/jobs",
        ),
    ),
    503: store_down("/jobs"),
}

GET_JOB: dict[int | str, dict[str, Any]] = {
    404: problem_response(
        "No event seen for this job",
        example(
            "Unknown job",
            404,
            JobNotFound.title,
            f"no events seen for job {JOB_ID!r}",
            f"/jobs/{JOB_ID}",
        ),
    ),
    500: corrupt(
        f"job:{JOB_ID}",
        f"/jobs/{JOB_ID}",
        "not a job view (status: Field required)",
    ),
    503: store_down(f"/jobs/{JOB_ID}"),
}

DEAD_LETTERS: dict[int | str, dict[str, Any]] = {
    422: problem_response(
        "Invalid query parameter",
        invalid_field(
            "limit out of range",
            "query.limit",
            "Input should be less than or equal to 500",
            "/dead-letters",
        ),
    ),
    500: corrupt("dead-letters", "/dead-letters", "not a list"),
    503: store_down("/dead-letters"),
}

READYZ: dict[int | str, dict[str, Any]] = {
    503: problem_response(
        "Not ready: the sidecar does not answer",
        example(
            "The sidecar is down",
            503,
            NotReady.title,
            "the Dapr sidecar at http://127.0.0.1:3501 does not answer its outbound health "
            "check (/v1.0/healthz/outbound)",
            "/readyz",
        ),
        headers=RETRY_AFTER,
    ),
}


def without_fastapi_422(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop the 422 FastAPI documents on its own for a route with parameters (an
    application/json HTTPValidationError): this service answers 422 as problem+json, and only
    where a route documents it (a job id in the path, say, is never invalid)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "application/json" in responses.get("422", {}).get("content", {}):
                del responses["422"]
    schemas = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return schema
