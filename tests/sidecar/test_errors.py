"""DaprError's two renderings of an ErrorInfo's metadata: Go's nil map and an empty one."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from sidecar.errors import DaprError


def error(metadata: dict[str, str] | None) -> DaprError:
    return DaprError(
        "ERR_X", "x", 400, grpc.StatusCode.INVALID_ARGUMENT, reason="DAPR_X", metadata=metadata
    )


def grpc_metadata(err: DaprError) -> dict[str, str]:
    info = error_details_pb2.ErrorInfo()
    assert err.grpc_status().details[-1].Unpack(info)
    return dict(info.metadata)


def test_a_nil_map_is_json_null_and_an_empty_grpc_map() -> None:
    nil = error(None)
    assert nil.http_body()["details"][-1]["metadata"] is None
    assert grpc_metadata(nil) == {}


def test_an_empty_map_stays_an_object() -> None:
    assert error({}).http_body()["details"][-1]["metadata"] == {}
    assert error({"b": "2", "a": "1"}).http_body()["details"][-1]["metadata"] == {
        "a": "1",
        "b": "2",
    }
    assert grpc_metadata(error({"a": "1"})) == {"a": "1"}
