"""App health checks (``--enable-app-health-check``) through a real sidecar and app: while the
app is unhealthy, invocations are refused with daprd's error and messages wait; both resume
when it is healthy again. ``--dapr-block-shutdown-duration``: after SIGTERM the APIs stay up,
with nothing delivered, until the time runs out or the app reports unhealthy. Plus the pure
state rules and the flags."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidecar.app_health import HealthState
from sidecar.config import parse_config
from sidecar.durations import format_go_duration
from tests.procs import wait_until
from tests.sidecar.api.conftest import Sidecar, TinyApp, unique

TOPIC = "health-orders"


@pytest.fixture(scope="module")
def watched(workdir: Path, resources: Path, registry: Path) -> Iterator[tuple[Sidecar, TinyApp]]:
    app = TinyApp(
        [{"pubsubname": "pubsub", "topic": TOPIC, "route": "/events/health"}], workdir
    ).start()
    flags = (
        "--enable-app-health-check",
        "--app-health-probe-interval",
        "1",
        "--app-health-threshold",
        "1",
    )
    car = Sidecar(
        "health-app", resources, registry, app_port=app.port, log_dir=workdir, flags=flags
    )
    try:
        car.start()
        yield car, app
    finally:
        car.stop()
        app.proc.stop()


def _invoke(car: Sidecar) -> httpx.Response:
    return httpx.get(f"{car.http}/v1.0/invoke/health-app/method/ping", timeout=10)


def _set_health(app: TinyApp, healthy: bool) -> None:
    verb = "up" if healthy else "down"
    httpx.post(f"http://127.0.0.1:{app.port}/health/{verb}", timeout=5).raise_for_status()


def _delivered(app: TinyApp, marker: str) -> bool:
    return any(r["event"].get("data", {}).get("m") == marker for r in app.received())


def test_an_unhealthy_app_gets_no_invocations_and_no_messages_until_it_recovers(
    watched: tuple[Sidecar, TinyApp],
) -> None:
    car, app = watched
    wait_until(lambda: _invoke(car).status_code == 200, timeout=20)
    health = httpx.get(f"{car.http}/v1.0/metadata", timeout=5).json()["appConnectionProperties"]
    assert health["health"] == {
        "healthCheckPath": "/healthz",
        "healthProbeInterval": "1s",
        "healthProbeTimeout": "500ms",
        "healthThreshold": 1,
    }

    _set_health(app, False)
    wait_until(lambda: _invoke(car).status_code == 500, timeout=10)
    refused = _invoke(car).json()
    assert refused["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "app is not in a healthy state" in refused["message"]

    marker = unique("held")
    published = httpx.post(
        f"{car.http}/v1.0/publish/pubsub/{TOPIC}", json={"m": marker}, timeout=10
    )
    assert published.status_code == 204
    time.sleep(2.5)  # two probe intervals: a healthy sidecar delivers in milliseconds
    assert not _delivered(app, marker)

    _set_health(app, True)
    wait_until(lambda: _delivered(app, marker), timeout=15)
    assert _invoke(car).status_code == 200


def _save_and_read(car: Sidecar, value: str) -> str:
    url = f"{car.http}/v1.0/state/redisstore"
    key = unique("blocked")
    saved = httpx.post(url, json=[{"key": key, "value": value}], timeout=10)
    assert saved.status_code == 204, saved.text
    read: str = httpx.get(f"{url}/{key}", timeout=10).json()
    return read


@pytest.mark.parametrize("health_checked", [True, False])
def test_a_blocked_shutdown_keeps_the_apis_up_and_delivers_nothing(
    workdir: Path, resources: Path, registry: Path, health_checked: bool
) -> None:
    app = TinyApp(
        [{"pubsubname": "pubsub", "topic": TOPIC + "-block", "route": "/events/block"}], workdir
    ).start()
    block = "30s" if health_checked else "3s"
    flags = ("--dapr-block-shutdown-duration", block)
    if health_checked:
        flags += ("--enable-app-health-check", "--app-health-probe-interval", "1")
        flags += ("--app-health-threshold", "1")
    car = Sidecar(
        unique("blocking"), resources, registry, app_port=app.port, log_dir=workdir, flags=flags
    )
    try:
        car.start()
        assert car.proc.proc is not None
        wait_until(lambda: "subscribed to topic" in car.proc.log_tail(), timeout=20)
        if health_checked:
            wait_until(lambda: "app is healthy" in car.proc.log_tail(), timeout=20)
        os.kill(car.proc.pid, signal.SIGTERM)
        began = time.monotonic()
        wait_until(lambda: "Blocking graceful shutdown for" in car.proc.log_tail(), timeout=10)

        assert _save_and_read(car, "still served") == "still served"
        marker = unique("after-sigterm")
        topic = f"{car.http}/v1.0/publish/pubsub/{TOPIC}-block"
        assert httpx.post(topic, json={"m": marker}, timeout=10).status_code == 204
        time.sleep(1.5)
        assert not _delivered(app, marker)  # subscriptions closed at the signal
        assert car.proc.alive()

        if health_checked:
            _set_health(app, False)  # ends the block long before its 30 s
        car.proc.proc.wait(timeout=20)
        took = time.monotonic() - began
        log = car.proc.log_tail()
        if health_checked:
            assert "App reported unhealthy, entering shutdown..." in log
            assert took < 15
        else:
            assert "Block shutdown period expired, entering shutdown..." in log
            assert took >= 3
    finally:
        car.stop()
        app.proc.stop()


def test_health_changes_follow_daprd_rules() -> None:
    state = HealthState(threshold=2)
    assert state.healthy is False  # unhealthy until the first success
    assert state.record(False) is None
    assert state.record(True) is True
    assert state.record(False) is None  # one failure is below the threshold
    assert state.record(True) is None  # and a success resets the count
    assert state.record(False) is None
    assert state.record(False) is False
    assert state.record(False) is None
    assert state.record(True) is True


def test_health_flags_and_their_metadata_form() -> None:
    config = parse_config(
        [
            "--app-id",
            "a",
            "--enable-app-health-check",
            "--app-health-check-path",
            "/ready",
            "--app-health-probe-timeout",
            "1500",
        ],
        {},
    )
    assert config.app_health is not None
    assert (config.app_health.path, config.app_health.timeout) == ("/ready", 1.5)
    assert (config.app_health.interval, config.app_health.threshold) == (5, 3)
    assert parse_config(["--app-id", "a"], {}).app_health is None
    with pytest.raises(SystemExit):
        parse_config(["--app-id", "a", "--app-health-threshold", "0"], {})
    blocked = parse_config(["--app-id", "a", "--dapr-block-shutdown-duration", "1m30s"], {})
    assert blocked.block_shutdown_seconds == 90
    for bad in ("soon", "-5s"):
        with pytest.raises(SystemExit):
            parse_config(["--app-id", "a", "--dapr-block-shutdown-duration", bad], {})
    assert [format_go_duration(s) for s in (0, 5, 0.5, 1.5, 90, 3600)] == [
        "0s",
        "5s",
        "500ms",
        "1.5s",
        "1m30s",
        "1h0m0s",
    ]
