"""A real sidecar's start order, health, API token, metadata, shutdown and startup failures."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.conf import settings

from tests.procs import PYTHON, free_port, wait_until
from tests.sidecar.api.conformance import APP_ID, STORES, Conformance
from tests.sidecar.api.conftest import Sidecar, TinyApp, component, unique
from tests.sidecar.api.transports import Api


def test_health_follows_daprd_start_order(resources: Path, registry: Path, workdir: Path) -> None:
    """Outbound health is ready before the app listens; full health only once it does."""
    app = TinyApp([{"pubsubname": "pubsub", "topic": "late", "route": "/events/late"}], workdir)
    car = Sidecar("late-app", resources, registry, app_port=app.port, log_dir=workdir)
    car.start(wait="/v1.0/healthz/outbound")
    try:
        health = httpx.get(f"{car.http}/v1.0/healthz")
        assert health.status_code == 500
        assert health.json()["errorCode"] == "ERR_HEALTH_NOT_READY"
        app.start()
        wait_until(lambda: httpx.get(f"{car.http}/v1.0/healthz").status_code == 204, timeout=15)
        subs = httpx.get(f"{car.http}/v1.0/metadata").json()["subscriptions"]
        assert [(s["topic"], s["type"]) for s in subs] == [("late", "PROGRAMMATIC")]
    finally:
        car.stop()
        app.proc.stop()


def test_metadata(sidecar: Sidecar, app: TinyApp, sdk_http_port: int) -> None:
    put = httpx.put(f"{sidecar.http}/v1.0/metadata/team", content=b"runtime")
    assert put.status_code == 204
    body = httpx.get(f"{sidecar.http}/v1.0/metadata").json()
    assert body["id"] == "api-app"
    assert body["extended"]["team"] == "runtime"
    assert body["appConnectionProperties"]["port"] == app.port
    components = {c["name"]: c for c in body["components"]}
    assert components["redisstore"]["type"] == "state.redis"
    assert "TRANSACTIONAL" in components["redisstore"]["capabilities"]
    topics = {s["topic"] for s in body["subscriptions"]}
    assert topics == {"api-orders", "orders/eu/new", "outbox-events"}
    # daprd writes its metadataResponse with json.NewEncoder: fields in the struct's order,
    # map keys sorted, HTML characters escaped, a newline at the end.
    for key, value in (("zeta", "<z>"), ("alpha", "a&b")):
        assert httpx.put(f"{sidecar.http}/v1.0/metadata/{key}", content=value).status_code == 204
    raw = httpx.get(f"{sidecar.http}/v1.0/metadata").content
    assert raw.startswith(b'{"id":"api-app","runtimeVersion":') and raw.endswith(b"}\n")
    extended = raw[raw.index(b'"extended":') :].split(b"}", 1)[0] + b"}"
    assert extended.startswith(b'"extended":{"alpha":"a\\u0026b",')
    assert extended.endswith(b'"zeta":"\\u003cz\\u003e"}')
    with DaprClient(address=sidecar.grpc_address) as client:
        meta = client.get_metadata()
        assert meta.application_id == "api-app"
        assert {c.name for c in meta.registered_components} == set(components)
        assert meta.extended_metadata["team"] == "runtime"


def test_api_token(
    resources: Path, registry: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    car = Sidecar(
        "guarded", resources, registry, env={"DAPR_API_TOKEN": "s3cret"}, log_dir=workdir
    ).start()
    try:
        denied = httpx.get(f"{car.http}/v1.0/metadata")
        assert denied.status_code == 401
        assert denied.text == "invalid api token\n"
        allowed = httpx.get(f"{car.http}/v1.0/metadata", headers={"dapr-api-token": "s3cret"})
        assert allowed.status_code == 200
        assert httpx.get(f"{car.http}/v1.0/healthz").status_code == 204

        monkeypatch.setattr(settings, "DAPR_HTTP_PORT", car.http_port)
        monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
        with DaprClient(address=car.grpc_address) as client:
            with pytest.raises(DaprGrpcError) as refused:
                client.get_state("memstore", "k")
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        monkeypatch.setattr(settings, "DAPR_API_TOKEN", "s3cret")
        with DaprClient(address=car.grpc_address) as client:
            client.save_state("memstore", "k", b"v")
            assert client.get_state("memstore", "k").data == b"v"
    finally:
        car.stop()


def test_shutdown_api_and_sigterm(resources: Path, registry: Path, workdir: Path) -> None:
    car = Sidecar("stopper", resources, registry, log_dir=workdir).start()
    entries = list(registry.glob("stopper.*.json"))
    assert len(entries) == 1
    assert httpx.post(f"{car.http}/v1.0/shutdown").status_code == 204
    assert car.proc.proc is not None
    assert car.proc.proc.wait(timeout=15) == 0
    assert not entries[0].exists()

    again = Sidecar("stopper", resources, registry, log_dir=workdir).start()
    assert again.proc.proc is not None
    os.kill(again.proc.pid, signal.SIGTERM)
    assert again.proc.proc.wait(timeout=15) == 0
    assert not list(registry.glob("stopper.*.json"))


@pytest.mark.parametrize(("budget", "slow_ms"), [("1", 30_000), ("0", 3_000)])
def test_graceful_shutdown_seconds_bound_the_wait_for_deliveries_in_flight(
    resources: Path, registry: Path, workdir: Path, budget: str, slow_ms: int
) -> None:
    """As daprd: a delivery still in flight when the budget runs out ends the sidecar with exit
    status 1 and "Graceful shutdown timeout exceeded"; with 0 there is no limit, so the sidecar
    waits for the app's answer and stops cleanly."""
    topic = unique("held")
    app = TinyApp(
        [{"pubsubname": "pubsub", "topic": topic, "route": f"/slow/{slow_ms}"}], workdir
    ).start()
    car = Sidecar(
        unique("graceful"),
        resources,
        registry,
        app_port=app.port,
        log_dir=workdir,
        flags=("--dapr-graceful-shutdown-seconds", budget),
    )
    try:
        car.start()
        published = httpx.post(f"{car.http}/v1.0/publish/pubsub/{topic}", json={"n": 1})
        assert published.status_code == 204
        peak = f"http://127.0.0.1:{app.port}/peak"
        wait_until(lambda: httpx.get(peak, timeout=5).json() >= 1, timeout=20)
        assert car.proc.proc is not None
        started = time.monotonic()
        os.kill(car.proc.pid, signal.SIGTERM)
        status = car.proc.proc.wait(timeout=60)
        waited = time.monotonic() - started
        log = car.proc.log_path.read_text()
        if budget == "1":
            assert status == 1, log[-2000:]
            assert "Graceful shutdown timeout exceeded, forcing shutdown" in log
            assert "Daprd shutdown gracefully" not in log
            assert waited < slow_ms / 1000  # it did not wait for the app's answer
        else:
            assert status == 0, log[-2000:]
            assert "Graceful shutdown timeout is infinite" in log
            assert "Shutting down component pubsub (pubsub.redis/v1)" in log
            assert "Daprd shutdown gracefully" in log
            assert waited >= 1.0  # the delivery had over 2 s to go: it waited for it
    finally:
        car.stop()
        app.proc.stop()


def run_sidecar(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            PYTHON,
            "-m",
            "sidecar",
            "--app-id",
            "bad",
            "--resources-path",
            str(folder),
            "--dapr-http-port",
            str(free_port()),
            "--dapr-grpc-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\nspec: {}\n",
            "spec.type: is required",
        ),
        (component("x", "state.cassandra"), "state.redis"),
        (
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\nspec:\n"
            "  type: state.redis\n  metadata:\n  - name: redisPassword\n    secretKeyRef:\n"
            "      name: s\n      key: k\n",
            "redisPassword use secretKeyRef, so auth.secretStore must name a secret store",
        ),
    ],
    ids=["missing-type", "unknown-type", "secret-ref"],
)
def test_bad_resources_stop_the_sidecar(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "broken.yaml").write_text(content)
    result = run_sidecar(tmp_path)
    assert result.returncode == 1
    assert "broken.yaml" in result.stderr
    assert expected in result.stderr


def test_a_document_that_is_not_yaml_is_skipped_with_a_warning(
    tmp_path: Path, registry: Path, workdir: Path
) -> None:
    """As daprd: the sidecar starts, says which file, and loads the other documents."""
    folder = tmp_path / "resources"
    folder.mkdir()
    broken = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: [oops\n"
    (folder / "broken.yaml").write_text(broken + "---\n" + component("kept", "state.in-memory"))
    car = Sidecar("yaml-app", folder, registry, log_dir=workdir)
    car.start()
    try:
        names = [c["name"] for c in httpx.get(f"{car.http}/v1.0/metadata").json()["components"]]
        assert names == ["kept"]
        log = car.proc.log_tail()
        assert "broken.yaml" in log
        assert "line 3: invalid YAML" in log
    finally:
        car.stop()


def test_component_init_failure_stops_unless_ignored(tmp_path: Path) -> None:
    dead_redis = {"redisHost": "127.0.0.1:1"}
    (tmp_path / "c.yaml").write_text(component("deadstore", "state.redis", dead_redis))
    failed = run_sidecar(tmp_path)
    assert failed.returncode == 1
    assert "deadstore" in failed.stderr

    ignored = component("deadstore", "state.redis", dead_redis).replace(
        "  version: v1\n", "  version: v1\n  ignoreErrors: true\n  initTimeout: 1s\n"
    )
    (tmp_path / "c.yaml").write_text(ignored + "---\n" + component("mem", "state.in-memory"))
    car = Sidecar("ignoring", tmp_path, tmp_path / "registry", log_dir=tmp_path).start()
    try:
        names = [c["name"] for c in httpx.get(f"{car.http}/v1.0/metadata").json()["components"]]
        assert names == ["mem"]
    finally:
        car.stop()


async def test_metadata_through_every_client(api: Api, conformance: Conformance) -> None:
    attribute = f"attr-{api.name}"
    await api.set_metadata(attribute, f"set by {api.name}")
    meta = await api.metadata()
    assert meta.app_id == APP_ID
    assert meta.extended[attribute] == f"set by {api.name}"
    expected = {name: type_ for name, type_ in STORES.items() if conformance.has(name)}
    expected |= {"redispubsub": "pubsub.redis", "mempubsub": "pubsub.in-memory"}
    assert {name: meta.components[name][0] for name in expected} == expected
    for name in expected:
        capabilities = meta.components[name][1]
        if name in STORES:
            assert {"ETAG", "TRANSACTIONAL", "TTL", "ACTOR"} <= capabilities, name
            assert ("QUERY_API" in capabilities) is (name == "pgstore"), name
    # contrib 1.18's Features(): Redis Streams none, the in-memory bus wildcard topics.
    assert meta.components["redispubsub"][1] == frozenset()
    assert meta.components["mempubsub"][1] == {"SUBSCRIBE_WILDCARDS"}
