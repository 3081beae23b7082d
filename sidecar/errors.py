"""daprd's error vocabulary: one exception type that renders as HTTP JSON or rich gRPC status.

HTTP errors look like ``{"errorCode": "...", "message": "...", "details": [...]}``; gRPC errors
carry ``google.rpc.Status`` with BadRequest, ResourceInfo and ErrorInfo (reason, domain
``dapr.io``), which the SDK surfaces as ``DaprGrpcError.error_code()``. The details come in the
order dapr/kit's ErrorBuilder appends them in daprd (pkg/api/errors): ErrorInfo last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "dapr.io"


@dataclass
class DaprError(Exception):
    error_code: str  #: HTTP ``errorCode``, e.g. ERR_STATE_STORE_NOT_FOUND
    message: str
    http_status: int
    grpc_code: grpc.StatusCode
    reason: str = ""  #: ErrorInfo reason, e.g. DAPR_STATE_NOT_FOUND; empty = no rich details
    #: ErrorInfo metadata. None is the nil map most of daprd's builders pass
    #: (``WithErrorInfo(reason, nil)``): HTTP JSON ``"metadata": null``, and over gRPC an empty
    #: map, as protobuf carries no nil; ``{}`` is an empty but non-nil map (HTTP ``{}``).
    metadata: dict[str, str] | None = None
    resource: tuple[str, str] | None = None  #: (resource type, resource name)
    field_violations: list[tuple[str, str]] = field(default_factory=list)  #: (field, why)
    #: ResourceInfo description: daprd's pub/sub errors repeat their message there.
    resource_description: str = ""
    #: False for daprd's messages.APIError answers (NewAPIErrorHTTP, ErrMalformedRequest...):
    #: their HTTP JSON is only errorCode and message (pkg/messages/api_error.go
    #: JSONErrorValue), though the gRPC API answers the same failure with rich details.
    http_details: bool = True
    #: The gRPC status message when daprd's gRPC API words it otherwise; "" = ``message``.
    grpc_message: str = ""

    def __str__(self) -> str:
        return self.message

    @property
    def grpc_text(self) -> str:
        return self.grpc_message or self.message

    def http_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errorCode": self.error_code, "message": self.message}
        if not self.http_details:
            return body
        details: list[dict[str, Any]] = []
        if self.field_violations:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "field_violations": [
                        {"field": f, "description": d} for f, d in self.field_violations
                    ],
                }
            )
        # dapr/kit renders each detail as a Go map: encoding/json writes its keys sorted.
        if self.resource:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                    "description": self.resource_description,
                    "owner": "",
                    "resource_name": self.resource[1],
                    "resource_type": self.resource[0],
                }
            )
        if self.reason:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "domain": DOMAIN,
                    "metadata": None
                    if self.metadata is None
                    else dict(sorted(self.metadata.items())),
                    "reason": self.reason,
                }
            )
        if details:
            body["details"] = details
        return body

    def grpc_status(self) -> status_pb2.Status:
        details: list[any_pb2.Any] = []
        if self.field_violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.field_violations
                ]
            )
            details.append(_pack(bad))
        if self.resource:
            resource = error_details_pb2.ResourceInfo(
                resource_type=self.resource[0],
                resource_name=self.resource[1],
                description=self.resource_description,
            )
            details.append(_pack(resource))
        if self.reason:
            info = error_details_pb2.ErrorInfo(
                reason=self.reason, domain=DOMAIN, metadata=self.metadata or {}
            )
            details.append(_pack(info))
        return status_pb2.Status(
            code=_GRPC_TO_RPC_CODE[self.grpc_code], message=self.grpc_text, details=details
        )


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_GRPC_TO_RPC_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: code_pb2.NOT_FOUND,
    grpc.StatusCode.ABORTED: code_pb2.ABORTED,
    grpc.StatusCode.INTERNAL: code_pb2.INTERNAL,
    grpc.StatusCode.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    grpc.StatusCode.UNIMPLEMENTED: code_pb2.UNIMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    grpc.StatusCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    grpc.StatusCode.DEADLINE_EXCEEDED: code_pb2.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN: code_pb2.UNKNOWN,
}


async def abort(context: grpc.aio.ServicerContext[Any, Any], err: DaprError) -> NoReturn:
    """End a gRPC call with ``err`` as daprd's rich status."""
    await context.abort(
        err.grpc_code,
        err.grpc_text,
        trailing_metadata=(("grpc-status-details-bin", err.grpc_status().SerializeToString()),),
    )
    raise AssertionError("unreachable: abort raises")  # pragma: no cover
