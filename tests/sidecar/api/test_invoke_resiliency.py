"""Resiliency for service invocation (``targets.apps``) between real sidecars.

A caller sidecar with a Resiliency document invokes a tiny app behind its own sidecar. The app's
/flaky/KEY/N/CODE route fails N times before it answers 200 and counts the calls, so what the
caller retried is read off the app.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2

from tests.sidecar.api.conftest import Sidecar, TinyApp, component

TARGET = "flaky-target"
RESILIENCY = f"""apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: calls
spec:
  policies:
    timeouts:
      quick: 300ms
    retries:
      thrice:
        policy: constant
        duration: 20ms
        maxRetries: 3
      onlyUnavailable:
        policy: constant
        duration: 20ms
        maxRetries: 3
        matching:
          httpStatusCodes: "503"
    circuitBreakers:
      twoStrikes:
        trip: consecutiveFailures >= 2
        timeout: 1s
  targets:
    apps:
      {TARGET}:
        retry: thrice
        timeout: quick
      picky-target:
        retry: onlyUnavailable
      fragile-target:
        circuitBreaker: twoStrikes
      built-in-target:
        retry: DaprBuiltInServiceRetries
      misnamed-target:
        retry: noSuchRetry
        timeout: noSuchTimeout
"""
TARGETS = (TARGET, "picky-target", "fragile-target", "built-in-target", "misnamed-target")


@pytest.fixture(scope="module")
def calls(workdir: Path, registry: Path) -> Iterator[tuple[Sidecar, TinyApp]]:
    folder = workdir / "invoke-resiliency"
    folder.mkdir()
    (folder / "c.yaml").write_text(component("mem", "pubsub.in-memory"))
    (folder / "resiliency.yaml").write_text(RESILIENCY)
    app = TinyApp(None, workdir).start()
    started: list[Sidecar] = []
    try:
        for app_id in TARGETS:
            car = Sidecar(app_id, folder, registry, app_port=app.port, log_dir=workdir)
            started.append(car.start())
        caller = Sidecar("resilient-caller", folder, registry, log_dir=workdir).start()
        started.append(caller)
        yield caller, app
    finally:
        for car in reversed(started):
            car.stop()
        app.proc.stop()


def invoke(caller: Sidecar, target: str, method: str) -> httpx.Response:
    return httpx.post(f"{caller.http}/v1.0/invoke/{target}/method/{method}", timeout=20)


def key() -> str:
    return os.urandom(4).hex()


def test_failed_answers_are_retried_until_one_succeeds(calls: tuple[Sidecar, TinyApp]) -> None:
    caller, _ = calls
    answer = invoke(caller, TARGET, f"flaky/{key()}/2/500")
    assert (answer.status_code, answer.json()) == (200, {"calls": 3})


def test_when_retries_run_out_the_last_answer_is_the_callers(
    calls: tuple[Sidecar, TinyApp],
) -> None:
    caller, _ = calls
    answer = invoke(caller, TARGET, f"flaky/{key()}/10/502")
    assert (answer.status_code, answer.json()) == (502, {"calls": 4})  # 1 + maxRetries


def test_matching_retries_only_the_listed_codes(calls: tuple[Sidecar, TinyApp]) -> None:
    caller, _ = calls
    unavailable = invoke(caller, "picky-target", f"flaky/{key()}/1/503")
    assert (unavailable.status_code, unavailable.json()) == (200, {"calls": 2})
    failing = invoke(caller, "picky-target", f"flaky/{key()}/1/500")
    assert (failing.status_code, failing.json()) == (500, {"calls": 1})  # not retried


def test_each_attempt_is_bounded_by_the_timeout(calls: tuple[Sidecar, TinyApp]) -> None:
    caller, _ = calls
    started = time.monotonic()
    answer = invoke(caller, TARGET, "slow/2000")
    elapsed = time.monotonic() - started
    assert answer.status_code == 500
    assert answer.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "context deadline exceeded" in answer.json()["message"]
    assert elapsed < 1.9  # four attempts of 300 ms, none waiting out the app's 2 s


def test_a_target_may_name_a_built_in_policy_it_did_not_define(
    calls: tuple[Sidecar, TinyApp],
) -> None:
    # daprd's own DaprBuiltInServiceRetries applies: 3 retries, 1 s apart.
    caller, _ = calls
    started = time.monotonic()
    answer = invoke(caller, "built-in-target", f"flaky/{key()}/2/500")
    elapsed = time.monotonic() - started
    assert (answer.status_code, answer.json()) == (200, {"calls": 3})
    assert 1.9 < elapsed < 10


def test_a_target_naming_undefined_policies_gets_none(calls: tuple[Sidecar, TinyApp]) -> None:
    caller, _ = calls
    answer = invoke(caller, "misnamed-target", f"flaky/{key()}/1/500")
    assert (answer.status_code, answer.json()) == (500, {"calls": 1})


def test_an_app_without_a_policy_is_called_once(
    calls: tuple[Sidecar, TinyApp], workdir: Path, registry: Path
) -> None:
    caller, app = calls
    folder = workdir / "invoke-no-resiliency"
    folder.mkdir()
    (folder / "c.yaml").write_text(component("mem", "pubsub.in-memory"))
    plain = Sidecar("plain-target", folder, registry, app_port=app.port, log_dir=workdir).start()
    try:
        answer = invoke(caller, "plain-target", f"flaky/{key()}/1/500")
        assert (answer.status_code, answer.json()) == (500, {"calls": 1})
    finally:
        plain.stop()


def test_a_circuit_breaker_opens_per_endpoint_and_closes_after_a_success(
    calls: tuple[Sidecar, TinyApp],
) -> None:
    caller, _ = calls
    method = f"flaky/{key()}/2/500"
    assert [invoke(caller, "fragile-target", method).json() for _ in range(2)] == [
        {"calls": 1},
        {"calls": 2},
    ]
    refused = invoke(caller, "fragile-target", method)  # open: the app is not called
    assert refused.status_code == 500
    assert refused.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: fragile-target, err: circuit breaker is open",
    }
    other = invoke(caller, "fragile-target", f"flaky/{key()}/0/500")  # another endpoint
    assert (other.status_code, other.json()) == (200, {"calls": 1})
    time.sleep(1.1)  # the breaker's timeout: half-open, one call let through
    again = invoke(caller, "fragile-target", method)
    assert (again.status_code, again.json()) == (200, {"calls": 3})
    assert invoke(caller, "fragile-target", method).json() == {"calls": 4}  # closed again


def test_over_grpc_every_failed_answer_is_retried(calls: tuple[Sidecar, TinyApp]) -> None:
    """daprd's InvokeService turns an app's HTTP error into a plain gRPC error, which the retry
    policy retries whatever its matching says (matching reads only the HTTP API's answers)."""
    caller, _ = calls
    method = f"flaky/{key()}/1/500"
    with grpc.insecure_channel(caller.grpc_address) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.InvokeService(
            invoke_pb2.InvokeServiceRequest(
                id="picky-target",
                message=common_pb2.InvokeRequest(
                    method=method,
                    http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
                ),
            ),
            timeout=20,
        )
    assert json.loads(reply.data.value) == {"calls": 2}  # 500 retried: not in "503"
