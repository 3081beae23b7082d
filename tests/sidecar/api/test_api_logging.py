"""`--enable-api-logging` and `--log-as-json`: daprd's API log lines, read from a sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import httpx
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2

from tests.procs import wait_until
from tests.sidecar.api.conftest import Sidecar, unique

GET_STATE = "/dapr.proto.runtime.v1.Dapr/GetState"


def api_lines(sidecar: Sidecar) -> list[dict[str, Any]]:
    lines = sidecar.proc.log_tail(200_000).splitlines()
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    return [line for line in parsed if line["msg"] in ("HTTP API Called", "gRPC API Called")]


def make_calls(sidecar: Sidecar) -> str:
    key = unique("logged")
    agent = {"User-Agent": "test-agent/1"}
    save = [{"key": key, "value": 1}]
    url = f"{sidecar.http}/v1.0/state/redisstore"
    assert httpx.post(url, json=save, headers=agent, timeout=10).status_code == 204
    assert httpx.get(f"{url}/{key}", headers=agent, timeout=10).content == b"1"
    options = [("grpc.primary_user_agent", "grpc-agent/2")]
    with grpc.insecure_channel(sidecar.grpc_address, options=options) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        stub.GetState(state_pb2.GetStateRequest(store_name="redisstore", key=key), timeout=10)
        try:
            stub.GetState(state_pb2.GetStateRequest(store_name="nostore", key=key), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    return key


def test_every_api_call_is_logged_in_json(resources: Path, registry: Path, workdir: Path) -> None:
    # --log-level warn: the API scopes still log at info, as daprd's do.
    flags = ("--enable-api-logging", "--log-as-json", "--log-level", "warn")
    car = Sidecar("api-logged", resources, registry, log_dir=workdir, flags=flags).start()
    try:
        key = make_calls(car)
        wait_until(
            lambda: (
                len([x for x in api_lines(car) if x["scope"].startswith("dapr.runtime.grpc")]) >= 2
            )
        )
        lines = api_lines(car)
    finally:
        car.stop()
    http_lines = {line["method"]: line for line in lines if line["msg"] == "HTTP API Called"}
    saved = http_lines["POST /v1.0/state/redisstore"]
    assert saved | {"duration": 0, "time": ""} == {
        "app_id": "api-logged",
        "code": 204,
        "duration": 0,
        "level": "info",
        "method": "POST /v1.0/state/redisstore",
        "msg": "HTTP API Called",
        "scope": "dapr.runtime.http-info",
        "size": 0,
        "time": "",
        "type": "log",
        "useragent": "test-agent/1",
    }
    assert isinstance(saved["duration"], int)
    assert http_lines[f"GET /v1.0/state/redisstore/{key}"]["size"] == 1
    assert http_lines["GET /v1.0/healthz"]["code"] == 204  # health checks are logged too
    grpc_lines = [line for line in lines if line["msg"] == "gRPC API Called"]
    assert [(line["method"], line["code"]) for line in grpc_lines] == [
        (GET_STATE, 0),
        (GET_STATE, 3),
    ]
    assert all(line["useragent"].startswith("grpc-agent/2") for line in grpc_lines)
    assert all(line["scope"] == "dapr.runtime.grpc.api-info" for line in grpc_lines)
    # Nothing else at info: --log-level warn holds for every other scope.
    other = [json.loads(x) for x in car.proc.log_tail(200_000).splitlines() if x.startswith("{")]
    assert {line["level"] for line in other if line not in lines} <= {"warning", "error"}


def test_api_log_lines_in_text_and_none_without_the_flag(
    resources: Path, registry: Path, workdir: Path
) -> None:
    logged = Sidecar(
        "api-logged-text", resources, registry, log_dir=workdir, flags=("--enable-api-logging",)
    ).start()
    quiet = Sidecar("api-quiet", resources, registry, log_dir=workdir).start()
    try:
        for car in (logged, quiet):
            make_calls(car)
        wait_until(lambda: "gRPC API Called" in logged.proc.log_tail(200_000))
        text = logged.proc.log_tail(200_000)
        quiet_text = quiet.proc.log_tail(200_000)
    finally:
        logged.stop()
        quiet.stop()
    line = next(x for x in text.splitlines() if 'method="POST /v1.0/state/redisstore"' in x)
    assert line.startswith("time=")
    assert ' level=info msg="HTTP API Called" app_id=api-logged-text code=204 duration=' in line
    assert line.endswith(
        ' method="POST /v1.0/state/redisstore" scope=dapr.runtime.http-info size=0 type=log'
        " useragent=test-agent/1"
    )
    assert f"method={GET_STATE} " in text
    assert "API Called" not in quiet_text
    assert "level=info" in quiet_text  # it does log, just not the calls
