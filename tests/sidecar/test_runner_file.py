"""Parsing the multi-app run template (``dapr run -f``) like the Dapr CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.runfile import RunFileError, load_run_file, parse_run_file
from sidecar.runner import Ports, app_environment, sidecar_command

ROOT = Path(__file__).resolve().parents[2]


def test_project_run_file() -> None:
    specs = load_run_file(ROOT / "dapr.yaml")
    assert [s.app_id for s in specs] == ["job-orchestrator", "microservice-x"]
    orchestrator = specs[0]
    assert orchestrator.app_port == 8000
    assert orchestrator.http_port == 3500
    assert orchestrator.grpc_port == 50001
    assert orchestrator.command == ("python", "-m", "job_orchestrator")
    assert orchestrator.resources_paths == ((ROOT / "components").resolve(),)
    assert orchestrator.app_dir == ROOT
    assert orchestrator.env["PYTHONUNBUFFERED"] == "1"
    assert orchestrator.app_health_check_path == "/healthz"
    assert [s.unapplied for s in specs] == [(), ()]  # the project's template is applied in full


def test_paths_precedence_env_merge_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "svc" / "own").mkdir(parents=True)
    text = """\
version: 1
common:
  resourcesPaths: [shared]
  env: {A: common, B: common}
  logLevel: debug
apps:
  - appDirPath: svc
    command: [run, me]
    resourcesPaths: [own]
    env: {B: app, FLAG: true}
    daprdLogDestination: console
  - appID: second
    appDirPath: .
    command: [x]
"""
    first, second = parse_run_file(text, tmp_path / "dapr.yaml")
    assert first.app_id == "svc"
    assert first.resources_paths == ((tmp_path / "svc" / "own").resolve(),)
    assert first.env == {"A": "common", "B": "app", "FLAG": "true"}
    assert first.log_level == "debug"
    assert first.daprd_log == "console"
    assert first.app_log == "fileAndConsole"
    assert second.resources_paths == ((tmp_path / "shared").resolve(),)
    assert second.http_port is None


def test_fields_the_local_runner_does_not_apply_are_named(tmp_path: Path) -> None:
    text = """\
version: 1
common:
  placementHostAddress: localhost:50005
  logLevel: debug
apps:
  - appDirPath: .
    command: [x]
    enableAppHealthCheck: true
    enableProfiling: true
    appPort: 8000
"""
    (spec,) = parse_run_file(text, tmp_path / "dapr.yaml")
    assert spec.unapplied == ("common.placementHostAddress", "apps[0].enableProfiling")
    assert spec.app_health_flags == ("--enable-app-health-check",)


def test_health_check_fields_become_daprd_flags(tmp_path: Path) -> None:
    text = """\
version: 1
common:
  enableAppHealthCheck: true
  appHealthProbeInterval: 2
apps:
  - appDirPath: .
    command: [x]
    appHealthThreshold: 4
  - appID: quiet
    appDirPath: .
    command: [y]
    enableAppHealthCheck: false
"""
    first, second = parse_run_file(text, tmp_path / "dapr.yaml")
    assert first.app_health_flags == (
        "--enable-app-health-check",
        "--app-health-probe-interval",
        "2",
        "--app-health-threshold",
        "4",
    )
    assert second.app_health_flags == ()
    assert "--app-health-threshold" in sidecar_command(first, Ports(3500, 50001, 9090))
    bad = text.replace("appHealthThreshold: 4", "appHealthThreshold: many")
    with pytest.raises(RunFileError, match="apps\\[0\\].appHealthThreshold"):
        parse_run_file(bad, tmp_path / "dapr.yaml")


def test_size_and_concurrency_fields_become_daprd_flags(tmp_path: Path) -> None:
    text = """\
version: 1
common:
  daprHTTPReadBufferSize: 16
apps:
  - appDirPath: .
    command: [x]
    daprHTTPMaxRequestSize: 8
    appMaxConcurrency: 3
    enableApiLogging: true
"""
    (spec,) = parse_run_file(text, tmp_path / "dapr.yaml")
    assert spec.unapplied == ()
    assert spec.api_logging
    assert "--enable-api-logging" in sidecar_command(spec, Ports(3500, 50001, 9090))
    flags = {
        "--dapr-http-max-request-size": "8",
        "--dapr-http-read-buffer-size": "16",
        "--app-max-concurrency": "3",
    }
    assert spec.number_flags == tuple(part for pair in flags.items() for part in pair)
    command = sidecar_command(spec, Ports(3500, 50001, 9090))
    for flag, value in flags.items():
        assert command[command.index(flag) + 1] == value
    with pytest.raises(RunFileError, match=r"apps\[0\].daprHTTPMaxRequestSize"):
        parse_run_file(text.replace("Size: 8", "Size: 8MB"), tmp_path / "dapr.yaml")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("apps: []\n", "version"),
        ("version: 1\napps: {}\n", "apps"),
        ("version: 1\napps:\n  - command: [x]\n", "apps[0].appDirPath"),
        ("version: 1\napps:\n  - appDirPath: nowhere\n    command: [x]\n", "apps[0].appDirPath"),
        ("version: 1\napps:\n  - appDirPath: .\n    command: x\n", "apps[0].command"),
        ("version: 1\napps:\n  - appDirPath: .\n    command: [x]\n    appPort: http\n", "appPort"),
        (
            "version: 1\ncommon:\n  resourcesPaths: [missing]\napps:\n"
            "  - appDirPath: .\n    command: [x]\n",
            "common.resourcesPaths[0]",
        ),
        (
            "version: 1\napps:\n  - {appID: a, appDirPath: ., command: [x]}\n"
            "  - {appID: a, appDirPath: ., command: [y]}\n",
            "duplicate appID a",
        ),
        ("version: 1\napps: [\n", "invalid YAML"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(RunFileError) as error:
        parse_run_file(text, tmp_path / "dapr.yaml")
    assert str(tmp_path / "dapr.yaml") in str(error.value)
    assert field in str(error.value)


def test_sidecar_command_and_app_env() -> None:
    spec = load_run_file(ROOT / "dapr.yaml")[1]
    ports = Ports(http=3501, grpc=50002, metrics=9091)
    args = sidecar_command(spec, ports)
    assert args[1:5] == ["-m", "sidecar", "--app-id", "microservice-x"]
    assert args[args.index("--metrics-port") + 1] == "9091"
    assert "--app-port" in args
    assert args[args.index("--app-port") + 1] == "8001"
    env = app_environment(spec, ports, {"PATH": "/bin", "PYTHONUNBUFFERED": "0"})
    assert env["APP_ID"] == "microservice-x"
    assert env["APP_PORT"] == "8001"
    assert env["DAPR_HTTP_PORT"] == "3501"
    assert env["DAPR_GRPC_PORT"] == "50002"
    assert env["APP_PROTOCOL"] == "http"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"] == "/bin"
