"""Request and response bodies of the HTTP API, with the examples Swagger shows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from dapr_support.text import unicode_problem
from job_orchestrator.jobs import JobStatus

WAIT_EXAMPLE: dict[str, JsonValue] = {
    "type": "wait",
    "input": {"seconds": 5},
    "owner": "microservice-x",
    "timeoutSeconds": 2,
}
#: POST /jobs waits through the Prefer header, so its examples carry no timeoutSeconds.
START_EXAMPLE: dict[str, JsonValue] = {
    "type": "wait",
    "input": {"seconds": 5},
    "owner": "microservice-x",
}
QUICK_EXAMPLE: dict[str, JsonValue] = {"type": "wait", "input": {"seconds": 1}, "timeoutSeconds": 5}
FAIL_EXAMPLE: dict[str, JsonValue] = {
    "type": "wait",
    "input": {"seconds": 1, "fail": True},
    "timeoutSeconds": 5,
}


class JobRequest(BaseModel):
    """A job to start."""

    # Strict: `false` or `"2"` is no number of seconds (lax mode would read 0.0 and 2.0).
    # NaN and Infinity (which Python's JSON parser reads) are no numbers JSON can answer with;
    # the input's are refused by HandlerRegistry.validate_input, naming where they are.
    # Forbid: a misspelt field (`runTimeoutSecond`) would otherwise be dropped without a word
    # and the job run without the limit its caller asked for.
    model_config = ConfigDict(
        strict=True,
        allow_inf_nan=False,
        extra="forbid",
        json_schema_extra={"examples": [WAIT_EXAMPLE, QUICK_EXAMPLE, FAIL_EXAMPLE]},
    )

    type: str = Field(default="wait", min_length=1, max_length=100, description="Job type.")
    input: dict[str, Any] = Field(default_factory=dict, description="Input of the job's handler.")
    owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who the job belongs to; events carry it.",
    )
    timeoutSeconds: float | None = Field(
        default=None,
        ge=0,
        description="How long this request waits for the result (capped by configuration). "
        "StartJobWithTimeout only; POST /jobs uses the Prefer header.",
    )
    maxAttempts: int | None = Field(
        default=None, ge=1, le=20, description="Runs allowed when the handler fails (default 1)."
    )
    runTimeoutSeconds: float | None = Field(
        default=None, gt=0, le=7 * 24 * 3600, description="Fail the job if a run takes longer."
    )

    @field_validator("input")
    @classmethod
    def _unicode_text(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = unicode_problem(value, "input")
        if problem is not None:
            raise ValueError(problem)
        return value


class Progress(BaseModel):
    percent: float
    message: str


class JobView(BaseModel):
    """A job as the API returns it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "4f1c2a9e-8d3b-4c57-9a51-2b7e0f6d1c44",
                    "type": "wait",
                    "owner": "microservice-x",
                    "status": "Completed",
                    "input": {"seconds": 5.0, "fail": False},
                    "progress": {"percent": 100.0, "message": "waited 5.0 s"},
                    "result": {"waitedSeconds": 5.0},
                    "error": None,
                    "createdAt": "2026-01-01T12:00:00.000Z",
                    "startedAt": "2026-01-01T12:00:00.010Z",
                    "updatedAt": "2026-01-01T12:00:05.020Z",
                    "completedAt": "2026-01-01T12:00:05.020Z",
                    "attempt": 1,
                    "maxAttempts": 1,
                    "runTimeoutSeconds": None,
                    "worker": "orchestrator-7d9f-1234",
                    "durationSeconds": 5.01,
                    "cancelRequested": False,
                    "handedBack": False,
                    "sequence": 8,
                }
            ]
        }
    )

    id: str
    type: str
    owner: str | None
    status: JobStatus
    input: dict[str, Any]
    progress: Progress
    result: Any
    error: str | None
    createdAt: str
    startedAt: str | None
    updatedAt: str
    completedAt: str | None
    attempt: int
    maxAttempts: int
    runTimeoutSeconds: float | None
    worker: str | None
    durationSeconds: float | None
    cancelRequested: bool
    handedBack: bool = Field(
        description="Given up by a stopping replica and waiting for another to take it over "
        "(false again once one has)."
    )
    sequence: int


class JobPage(BaseModel):
    items: list[JobView]
    nextCursor: str | None = Field(
        description=(
            "Pass as `cursor` for the next page; null on the last page. A page may hold fewer "
            "than `limit` jobs and still have a next page."
        )
    )


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    role: str
    replica: str


class Health(BaseModel):
    status: str
    role: str
    replica: str
    runningJobs: int
    waitingRequests: int
    sidecarCalls: int
