"""The orchestrator's error hierarchy; problems.py maps each one to an HTTP problem in one place."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of the errors a client may see; ``status`` and ``title`` shape the problem."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class JobNotFound(OrchestratorError):
    status = 404
    title = "Job not found"

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r} (it may have expired or been deleted)")


class JobConflict(OrchestratorError):
    """The job's status does not allow the request (cancel a final job, result of a running job)."""

    status = 409
    title = "Conflict with the job's status"


class RequestInProgress(JobConflict):
    """An earlier request with the same Idempotency-Key is still creating its job."""

    title = "Request with this Idempotency-Key in progress"


class ResultGone(OrchestratorError):
    status = 410
    title = "Result deleted"


class IdempotencyKeyReused(OrchestratorError):
    status = 422
    title = "Idempotency-Key reused with another request"


class PayloadTooLarge(OrchestratorError):
    status = 413
    title = "Request body too large"


class StoreUnavailable(OrchestratorError):
    """The sidecar or the state store behind it did not answer; the client should retry."""

    status = 503
    title = "State store unavailable"
