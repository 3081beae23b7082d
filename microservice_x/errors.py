"""What can go wrong in microservice-x, as a small hierarchy mapped to HTTP in problems.py."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of the errors a caller can be told about (RFC 9457 problem fields)."""

    status = 500
    title = "Internal error"
    #: Seconds a client should wait before trying again, for transient failures.
    retry_after: int | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extensions(self) -> dict[str, Any]:
        return {}


class JobNotFound(ServiceError):
    status = 404
    title = "Job not found"


class Unauthorized(ServiceError):
    """A sidecar-only route called without the sidecar's ``dapr-api-token`` (APP_API_TOKEN)."""

    status = 401
    title = "Unauthorized"


class InvalidRequest(ServiceError):
    status = 422
    title = "Invalid request"


class StoreError(ServiceError):
    """The view could not be read or written; a later attempt may succeed."""

    status = 503
    title = "State store unavailable"
    retry_after: int | None = 2


class CorruptRecord(StoreError):
    """A stored record does not decode; retrying will not fix it by itself."""

    status = 500
    title = "Corrupt stored record"
    retry_after = None


class NotReady(ServiceError):
    """The sidecar does not answer: this instance should get no requests now."""

    status = 503
    title = "Not ready"
    retry_after = 2


class OrchestratorUnavailable(ServiceError):
    status = 503
    title = "Orchestrator unavailable"
    retry_after = 2


class OrchestratorBadAnswer(ServiceError):
    status = 502
    title = "Unexpected answer from the orchestrator"


class OrchestratorRefusedUs(ServiceError):
    """The orchestrator refused microservice-x's own credentials (401, or 403 for a key bound
    to another owner): its configuration, not the caller's request, is wrong."""

    status = 502
    title = "The orchestrator refused microservice-x's credentials"


class OrchestratorRejected(ServiceError):
    """The orchestrator answered the request with an error of its own: relayed as it is."""

    def __init__(
        self, status: int, problem: dict[str, Any], retry_after: int | None = None
    ) -> None:
        detail = problem.get("detail")
        super().__init__(detail if isinstance(detail, str) else f"orchestrator answered {status}")
        self.status = status
        # A relayed 503 keeps telling the caller when to come back, as the orchestrator did.
        if retry_after is None and status == 503:
            retry_after = OrchestratorUnavailable.retry_after
        self.retry_after = retry_after
        title = problem.get("title")
        self.title = title if isinstance(title, str) else "Rejected by the orchestrator"
        self.problem = problem

    def extensions(self) -> dict[str, Any]:
        skip = {"type", "title", "status", "detail", "instance"}
        return {k: v for k, v in self.problem.items() if k not in skip}
