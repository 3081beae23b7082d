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


class KeyJobDeleted(JobConflict):
    """The job an earlier request with the same Idempotency-Key made has been deleted."""

    title = "Job of this Idempotency-Key deleted"


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


class InputTooLarge(PayloadTooLarge):
    """The job's ``input`` alone is over its own cap (it is stored and published with the job)."""

    title = "Job input too large"


class Unauthorized(OrchestratorError):
    """No valid API key (public API), or no valid ``dapr-api-token`` (sidecar-only routes)."""

    status = 401
    title = "Unauthorized"


class OwnerMismatch(OrchestratorError):
    """A body ``owner`` other than the owner the caller's API key is bound to."""

    status = 403
    title = "Owner does not match the API key"


class TooManyWaiters(OrchestratorError):
    """This replica already holds as many waiting requests as it is configured for."""

    status = 503
    title = "Too many waiting requests"


class ApiNotServed(OrchestratorError):
    """A worker-only replica (APP_ENV=worker) got a job API request: it is no job's home, so
    not 404, which would tell the client the job does not exist."""

    status = 503
    title = "Job API not served by this replica"


class NotReady(OrchestratorError):
    """This replica should get no requests now: its sidecar does not answer."""

    status = 503
    title = "Replica not ready"
