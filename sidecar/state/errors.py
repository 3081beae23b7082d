"""daprd's State API errors: error codes, messages, HTTP statuses, gRPC codes and details.

Taken from dapr/dapr pkg/api/errors/state.go, pkg/messages (predefined.go, errorcodes) and
the state handlers of pkg/api/http/http.go and pkg/api/grpc/grpc.go. Where daprd's HTTP and
gRPC answers differ, the HTTP errorCode/status and the gRPC code/ErrorInfo reason are both
kept in the one DaprError. The HTTP API answers get, save, delete and transaction failures with
messages.APIError (errorCode and message only); its gRPC API with apierrors.Basic (an ErrorInfo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from sidecar.errors import DaprError
from sidecar.state.base import ETagInvalid, ETagMismatch

_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_INTERNAL = grpc.StatusCode.INTERNAL


@dataclass(frozen=True, slots=True)
class Operation:
    code: str  #: HTTP errorCode and gRPC ErrorInfo reason
    template: str  #: daprd's message; {store} {key} {error}


SAVE = Operation("ERR_STATE_SAVE", "failed saving state in state store {store}: {error}")
DELETE = Operation("ERR_STATE_DELETE", "failed deleting state with key {key}: {error}")
BULK_DELETE = Operation(
    "ERR_STATE_BULK_DELETE", "failed deleting state in state store {store}: {error}"
)


def _app_meta(app_id: str) -> dict[str, str] | None:
    """daprd's NotFound/NotConfigured(appID): the app id, or a nil map when it is empty."""
    return {"appID": app_id} if app_id else None


def not_found(store: str, app_id: str) -> DaprError:
    """``app_id`` is "" where daprd passes none: its gRPC API and the query API (universal
    GetStateStore); its HTTP state handlers pass the app's."""
    return DaprError(
        "ERR_STATE_STORE_NOT_FOUND",
        f"state store {store} is not found",
        400,
        _INVALID,
        reason="DAPR_STATE_NOT_FOUND",
        metadata=_app_meta(app_id),
    )


def not_configured(store: str, app_id: str) -> DaprError:
    return DaprError(
        "ERR_STATE_STORE_NOT_CONFIGURED",
        f"state store {store} is not configured",
        500,
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="DAPR_STATE_NOT_CONFIGURED",
        metadata=_app_meta(app_id),
    )


def illegal_key(store: str, key: str, message: str) -> DaprError:
    return DaprError(
        "ERR_MALFORMED_REQUEST",
        message,
        400,
        _INVALID,
        reason="DAPR_STATE_ILLEGAL_KEY",
        resource=("state", store),
        field_violations=[(key, message)],
    )


def empty_key() -> DaprError:
    """A save with an empty key: HTTP ``"key" is a required field`` (http.go onPostState),
    gRPC "state key cannot be empty" (grpc.go SaveState, apierrors.Basic)."""
    return DaprError(
        "ERR_MALFORMED_REQUEST",
        '"key" is a required field',
        400,
        _INVALID,
        reason="ERR_STATE_SAVE",
        http_details=False,
        grpc_message="state key cannot be empty",
    )


def bad_json(detail: str) -> DaprError:
    """gRPC SaveState with contentType application/json and a value that is not JSON."""
    return DaprError("ERR_MALFORMED_REQUEST", detail, 400, grpc.StatusCode.UNKNOWN)


def get_failed(store: str, key: str, error: Exception) -> DaprError:
    message = f"fail to get {key} from state store {store}: {error}"
    return DaprError(
        "ERR_STATE_GET", message, 500, _INTERNAL, reason="ERR_STATE_GET", http_details=False
    )


def bulk_get_failed(error: Exception) -> DaprError:
    return DaprError(
        "ERR_STATE_BULK_GET",
        str(error),
        500,
        _INTERNAL,
        reason="ERR_STATE_BULK_GET",
        http_details=False,
    )


def operation_failed(
    op: Operation, store: str, key: str, failures: Sequence[BaseException]
) -> DaprError:
    """Save/delete failures: 409 / ABORTED for an etag mismatch, 400 / INVALID_ARGUMENT for
    a malformed etag, else 500 / INTERNAL. Several failures are joined like Go's errors.Join
    and the first etag error decides the status, as daprd's errors.As does."""
    status, code = 500, _INTERNAL
    for failure in failures:
        if isinstance(failure, ETagMismatch):
            status, code = 409, grpc.StatusCode.ABORTED
            break
        if isinstance(failure, ETagInvalid):
            status, code = 400, _INVALID
            break
    error = "\n".join(str(f) for f in failures)
    message = op.template.format(store=store, key=key, error=error)
    return DaprError(op.code, message, status, code, reason=op.code, http_details=False)


def transaction_failed(error: Exception) -> DaprError:
    """Any failure inside a transaction, etag ones included: 500 / INTERNAL."""
    message = f"error while executing state transaction: {error}"
    return DaprError(
        "ERR_STATE_TRANSACTION",
        message,
        500,
        _INTERNAL,
        reason="ERR_STATE_TRANSACTION",
        http_details=False,
    )


def unsupported_operation(operation: object) -> DaprError:
    """HTTP 400; gRPC UNIMPLEMENTED."""
    return DaprError(
        "ERR_NOT_SUPPORTED_STATE_OPERATION",
        f"operation type {operation} not supported",
        400,
        grpc.StatusCode.UNIMPLEMENTED,
        reason="ERR_NOT_SUPPORTED_STATE_OPERATION",
        http_details=False,
    )


def transactions_unsupported(store: str) -> DaprError:
    return DaprError(
        "ERR_STATE_STORE_NOT_SUPPORTED",
        f"state store {store} doesn't support transactions",
        500,
        grpc.StatusCode.UNIMPLEMENTED,
        reason="DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED",
        resource=("state", store),
    )


def query_unsupported(store: str) -> DaprError:
    return DaprError(
        "ERR_STATE_STORE_NOT_SUPPORTED",
        "state store does not support querying",
        500,
        _INTERNAL,
        reason="DAPR_STATE_QUERYING_NOT_SUPPORTED",
        resource=("state", store),
    )


def query_failed(store: str, error: object) -> DaprError:
    return DaprError(
        "ERR_STATE_QUERY",
        f"state store {store} query failed: {error}",
        500,
        _INTERNAL,
        reason="DAPR_STATE_QUERY_FAILED",
        resource=("state", store),
    )
