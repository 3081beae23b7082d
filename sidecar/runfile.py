"""Parse the Dapr CLI's multi-app run template (``dapr run -f dapr.yaml``) into app specs.

Paths follow the CLI: ``appDirPath`` and ``common.resourcesPaths`` are relative to the template
file, an app's own ``resourcesPaths`` relative to its ``appDirPath``; common settings and env fill
what an app leaves unset. Every error names the file, the field and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOG_DESTINATIONS = ("file", "console", "fileAndConsole")
#: Fields an app (or ``common``) may set that the local runner applies. The CLI knows more
#: (health checks, max concurrency, ...): those are reported, never silently dropped.
SETTINGS = frozenset(
    {
        "appProtocol",
        "appChannelAddress",
        "appHealthCheckPath",
        "enableAppHealthCheck",
        "enableApiLogging",
        "appHealthProbeInterval",
        "appHealthProbeTimeout",
        "appHealthThreshold",
        "daprHTTPMaxRequestSize",
        "daprHTTPReadBufferSize",
        "appMaxConcurrency",
        "logLevel",
        "daprdLogDestination",
        "appLogDestination",
    }
)
APP_FIELDS = SETTINGS | {
    "appID",
    "appDirPath",
    "command",
    "appPort",
    "daprHTTPPort",
    "daprGRPCPort",
    "metricsPort",
    "resourcesPaths",
    "resourcesPath",
    "env",
}
COMMON_FIELDS = SETTINGS | {"resourcesPaths", "resourcesPath", "env"}


class RunFileError(Exception):
    def __init__(self, source: Path | str, field_name: str, problem: str) -> None:
        where = f"{source}: {field_name}" if field_name else str(source)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class AppSpec:
    app_id: str
    app_dir: Path
    command: tuple[str, ...]
    app_port: int | None = None
    http_port: int | None = None  #: None = a free port is picked
    grpc_port: int | None = None
    metrics_port: int | None = None
    resources_paths: tuple[Path, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    app_protocol: str = "http"
    app_channel_address: str = ""
    app_health_check_path: str = ""
    #: daprd's health-check flags, from enableAppHealthCheck and appHealthProbe*/Threshold
    app_health_flags: tuple[str, ...] = ()
    #: daprd's flags from daprHTTPMaxRequestSize (MB), daprHTTPReadBufferSize (KB) and
    #: appMaxConcurrency
    number_flags: tuple[str, ...] = ()
    api_logging: bool = False  #: enableApiLogging: daprd's --enable-api-logging
    log_level: str = ""
    daprd_log: str = "file"  #: where the sidecar's output goes (CLI default: file)
    app_log: str = "fileAndConsole"  #: where the app's output goes (CLI default)
    #: Fields of the template the local runner does not apply (``apps[0].enableProfiling``).
    unapplied: tuple[str, ...] = ()


def load_run_file(path: Path) -> list[AppSpec]:
    """The apps of a run template; ``path`` may be the file or a folder holding dapr.yaml."""
    if path.is_dir():
        path = path / "dapr.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunFileError(path, "", f"cannot read the run template: {exc.strerror}") from None
    return parse_run_file(text, path.resolve())


def parse_run_file(text: str, path: Path) -> list[AppSpec]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise RunFileError(path, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise RunFileError(path, "", "expected a mapping with version, common and apps")
    if not isinstance(doc.get("version"), int) or doc["version"] < 1:
        raise RunFileError(path, "version", "required field 'version' must be a positive integer")
    base = path.parent
    common = _mapping(doc.get("common"), path, "common")
    apps = doc.get("apps")
    if not isinstance(apps, list) or not apps:
        raise RunFileError(path, "apps", "expected a non-empty list of apps")
    common_resources = _paths(common, "resourcesPaths", base, path, "common")
    common_env = _env(common.get("env"), path, "common.env")
    specs: list[AppSpec] = []
    for index, raw in enumerate(apps):
        where = f"apps[{index}]"
        app = _mapping(raw, path, where)
        app_dir_text = _str(app.get("appDirPath"), path, f"{where}.appDirPath")
        if not app_dir_text:
            raise RunFileError(path, f"{where}.appDirPath", "required field is missing")
        app_dir = (base / Path(app_dir_text).expanduser()).resolve()
        if not app_dir.is_dir():
            raise RunFileError(path, f"{where}.appDirPath", f"{app_dir} is not a folder")

        def setting(key: str, app: dict[str, Any] = app, where: str = where) -> Any:
            value = app.get(key)
            return common.get(key) if value in (None, "") else value

        command = app.get("command")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(c, str) for c in command)
        ):
            raise RunFileError(path, f"{where}.command", "expected a non-empty list of strings")
        resources = _paths(app, "resourcesPaths", app_dir, path, where) or common_resources
        if not resources and (app_dir / ".dapr" / "resources").is_dir():
            resources = (app_dir / ".dapr" / "resources",)
        spec = AppSpec(
            app_id=_str(app.get("appID"), path, f"{where}.appID") or app_dir.name,
            app_dir=app_dir,
            command=tuple(command),
            app_port=_port(app.get("appPort"), path, f"{where}.appPort"),
            http_port=_port(app.get("daprHTTPPort"), path, f"{where}.daprHTTPPort"),
            grpc_port=_port(app.get("daprGRPCPort"), path, f"{where}.daprGRPCPort"),
            metrics_port=_port(app.get("metricsPort"), path, f"{where}.metricsPort"),
            resources_paths=resources,
            env={**common_env, **_env(app.get("env"), path, f"{where}.env")},
            app_protocol=_str(setting("appProtocol"), path, f"{where}.appProtocol") or "http",
            app_channel_address=_str(
                setting("appChannelAddress"), path, f"{where}.appChannelAddress"
            ),
            app_health_check_path=_str(
                setting("appHealthCheckPath"), path, f"{where}.appHealthCheckPath"
            ),
            app_health_flags=_health_flags(setting, path, where),
            number_flags=_number_flags(setting, path, where),
            api_logging=_switch(setting, "enableApiLogging", path, where),
            log_level=_str(setting("logLevel"), path, f"{where}.logLevel"),
            daprd_log=_destination(setting("daprdLogDestination"), "file", path, where),
            app_log=_destination(setting("appLogDestination"), "fileAndConsole", path, where),
            unapplied=tuple(
                [f"common.{k}" for k in sorted(set(common) - COMMON_FIELDS)]
                + [f"{where}.{k}" for k in sorted(set(app) - APP_FIELDS)]
            ),
        )
        if spec.app_protocol != "http":
            raise RunFileError(
                path, f"{where}.appProtocol", "only http is supported by the local sidecar"
            )
        specs.append(spec)
    ids = [s.app_id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RunFileError(path, "apps", f"duplicate appID {', '.join(duplicates)}")
    return specs


#: Run-template fields that become daprd flags of the same meaning: health-check settings
#: (above 0) and the size and concurrency settings (any whole number).
_HEALTH_FIELDS = (
    ("appHealthProbeInterval", "--app-health-probe-interval"),
    ("appHealthProbeTimeout", "--app-health-probe-timeout"),
    ("appHealthThreshold", "--app-health-threshold"),
)
_NUMBER_FIELDS = (
    ("daprHTTPMaxRequestSize", "--dapr-http-max-request-size"),
    ("daprHTTPReadBufferSize", "--dapr-http-read-buffer-size"),
    ("appMaxConcurrency", "--app-max-concurrency"),
)


def _switch(setting: Callable[[str], Any], key: str, path: Path, where: str) -> bool:
    value = setting(key)
    if value is not None and not isinstance(value, bool):
        raise RunFileError(path, f"{where}.{key}", "expected true or false")
    return bool(value)


def _health_flags(setting: Callable[[str], Any], path: Path, where: str) -> tuple[str, ...]:
    if not _switch(setting, "enableAppHealthCheck", path, where):
        return ()
    values = _whole_numbers(setting, _HEALTH_FIELDS, path, where, positive=True)
    return ("--enable-app-health-check", *values)


def _number_flags(setting: Callable[[str], Any], path: Path, where: str) -> tuple[str, ...]:
    return _whole_numbers(setting, _NUMBER_FIELDS, path, where, positive=False)


def _whole_numbers(
    setting: Callable[[str], Any],
    fields: tuple[tuple[str, str], ...],
    path: Path,
    where: str,
    *,
    positive: bool,
) -> tuple[str, ...]:
    """``flag value`` for each field set, a whole number (above 0 where ``positive``)."""
    flags: list[str] = []
    for key, flag in fields:
        value = setting(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or (positive and value <= 0):
            wanted = "a whole number above 0" if positive else "a whole number"
            raise RunFileError(path, f"{where}.{key}", f"expected {wanted}, got {value!r}")
        flags += [flag, str(value)]
    return tuple(flags)


def _mapping(value: Any, path: Path, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunFileError(path, where, f"expected a mapping, got {type(value).__name__}")
    return value


def _str(value: Any, path: Path, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RunFileError(path, where, f"expected a string, got {type(value).__name__}")
    return value


def _port(value: Any, path: Path, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise RunFileError(path, where, f"expected a port number 1-65535, got {value!r}")
    return int(value)


def _env(value: Any, path: Path, where: str) -> dict[str, str]:
    raw = _mapping(value, path, where)
    env: dict[str, str] = {}
    for key, item in raw.items():
        if isinstance(item, dict | list) or item is None:
            raise RunFileError(path, f"{where}.{key}", "expected a scalar value")
        env[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
    return env


def _paths(
    section: Mapping[str, Any], key: str, base: Path, path: Path, where: str
) -> tuple[Path, ...]:
    raw = section.get(key)
    single = section.get("resourcesPath")  # deprecated singular form, still read by the CLI
    items: list[Any] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise RunFileError(path, f"{where}.{key}", "expected a list of folders")
        items.extend(raw)
    if single:
        items.append(single)
    resolved: list[Path] = []
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise RunFileError(path, f"{where}.{key}[{position}]", "expected a folder path")
        folder = (base / Path(item).expanduser()).resolve()
        if not folder.is_dir():
            raise RunFileError(path, f"{where}.{key}[{position}]", f"{folder} is not a folder")
        resolved.append(folder)
    return tuple(resolved)


def _destination(value: Any, default: str, path: Path, where: str) -> str:
    if value in (None, ""):
        return default
    if value not in LOG_DESTINATIONS:
        raise RunFileError(
            path, where, f"log destination must be one of {', '.join(LOG_DESTINATIONS)}"
        )
    return str(value)
