"""How daprd's gRPC InvokeService reports an HTTP app's answer (pkg/api/grpc/grpc.go).

The app's headers go back as response header metadata (``InternalMetadataToGrpcMetadata``),
with ``dapr-http-status``; a status outside 2xx becomes the gRPC error of
``invokev1.ErrorFromHTTPResponseCode`` (pkg/messaging/v1/util.go).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from sidecar.errors import DOMAIN

#: invokev1.CodeFromHTTPStatus; any other status outside 2xx is UNKNOWN.
_HTTP_TO_GRPC = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.CANCELLED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.UNKNOWN,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
#: Go's http.StatusText (net/http/status.go); an unknown status has no text.
GO_STATUS_TEXT = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    208: "Already Reported",
    226: "IM Used",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request URI Too Long",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    417: "Expectation Failed",
    418: "I'm a teapot",
    421: "Misdirected Request",
    422: "Unprocessable Entity",
    423: "Locked",
    424: "Failed Dependency",
    425: "Too Early",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    510: "Not Extended",
    511: "Network Authentication Required",
}
#: invokev1's isPermanentHTTPHeader (canonical names): these go back as ``dapr-<name>``.
_PERMANENT = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-language",
        "accept-ranges",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "cache-control",
        "content-type",
        "content-length",
        "cookie",
        "date",
        "expect",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-schedule-tag-match",
        "if-unmodified-since",
        "max-forwards",
        "origin",
        "pragma",
        "referer",
        "via",
        "warning",
    }
)
#: Headers InternalMetadataToGrpcMetadata leaves out (the trace context travels apart).
_SKIPPED = frozenset({"traceparent", "tracestate", "grpc-trace-bin", "destination-app-id"})
_GRPC_KEY = re.compile(r"^[0-9a-z_.-]+$")
#: ErrorInfo metadata values are cut to this many bytes (maxMetadataValueLen).
_MAX_DETAIL = 63
HTTP_STATUS_HEADER = "dapr-http-status"

Metadata = tuple[tuple[str, str | bytes], ...]


def response_metadata(status: int, headers: Iterable[tuple[str, str]]) -> Metadata:
    """The app's headers as daprd sends them back as gRPC header metadata, with the status."""
    out: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        key = name.lower()
        if key in _SKIPPED or key == HTTP_STATUS_HEADER or not _GRPC_KEY.match(key):
            continue
        if key in _PERMANENT:
            key = f"dapr-{key}"
        out.append((key, value.encode("latin-1") if key.endswith("-bin") else value))
    out.append((HTTP_STATUS_HEADER, str(status)))
    return tuple(out)


def grpc_code(status: int) -> grpc.StatusCode:
    """invokev1.CodeFromHTTPStatus."""
    if 200 <= status < 300:
        return grpc.StatusCode.OK
    return _HTTP_TO_GRPC.get(status, grpc.StatusCode.UNKNOWN)


def error_status(status: int, body: bytes) -> status_pb2.Status:
    """invokev1.ErrorFromHTTPResponseCode for a status outside 2xx: Go's status text as message
    and reason, the code and the body's first 63 bytes in ErrorInfo. A cut that is no valid
    UTF-8 cannot be marshalled into ErrorInfo, and daprd then sends the bare status."""
    text = GO_STATUS_TEXT.get(status, "")
    code = grpc_code(status).value[0]
    result = status_pb2.Status(code=code, message=text)
    try:
        detail = body[:_MAX_DETAIL].decode("utf-8")
    except UnicodeDecodeError:
        return result
    info = error_details_pb2.ErrorInfo(
        reason=text,
        domain=DOMAIN,
        metadata={"http.code": str(status), "http.error_message": detail},
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    result.details.append(packed)
    return result
