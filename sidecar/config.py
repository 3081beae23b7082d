"""The sidecar's settings, parsed from daprd's own command-line flags (contract section 1)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sidecar.app_health import HealthCheck
from sidecar.durations import parse_go_duration
from sidecar.quantity import QuantityError, parse_bytes

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    app_id: str
    app_port: int | None = None  #: None = no app: no subscriptions, invoke answers an error
    app_protocol: str = "http"
    app_channel_address: str = "127.0.0.1"
    #: ``--app-max-concurrency``: invocations and deliveries at the app at once; -1 (or any
    #: value below 1): no limit
    app_max_concurrency: int = -1
    http_port: int = 3500
    grpc_port: int = 50001
    listen_address: str = "127.0.0.1"
    resources_paths: tuple[Path, ...] = ()
    log_level: str = "info"
    api_token: str | None = None  #: DAPR_API_TOKEN: required on every API call but healthz
    app_api_token: str | None = None  #: APP_API_TOKEN: sent to the app as dapr-api-token
    host_ip: str = ""  #: DAPR_HOST_IP: the address the forwarding headers name ("" = found)
    namespace: str = ""  #: NAMESPACE as set ("" when unset): keyPrefix namespace, metrics
    #: NAMESPACE, or "default" when it is not set (daprd's security.CurrentNamespace): the
    #: ``{namespace}`` template and the outbox's internal topic
    current_namespace: str = "default"
    #: ``--enable-app-health-check`` and its probe settings; None = no health checks
    app_health: HealthCheck | None = None
    #: ``--dapr-block-shutdown-duration``: after SIGTERM, keep the APIs up this long (or until
    #: the app reports unhealthy); None = shut down at once
    block_shutdown_seconds: float | None = None
    #: ``--dapr-graceful-shutdown-seconds``: how long the shutdown may wait for deliveries in
    #: flight and for components to close before it gives up (exit 1); None = no limit
    graceful_shutdown_seconds: float | None = 5.0
    config_file: str = ""  #: daprd's --config: Configuration resources are not applied
    #: ``--enable-metrics`` / ``--metrics-port`` / ``--metrics-listen-address``: where daprd's
    #: Prometheus metrics are served; None = not served
    metrics_address: tuple[str, int] | None = None
    #: ``--max-body-size``: the longest request body the HTTP and gRPC APIs take; 0 or less:
    #: no limit
    max_body_bytes: int = 4 << 20
    #: ``--read-buffer-size``: Go's MaxHeaderBytes for the HTTP API (request line and headers)
    read_buffer_bytes: int = 4 << 10
    #: ``--enable-api-logging``: a log line for every HTTP and gRPC API call
    api_logging: bool = False
    #: ``--log-as-json``: log lines as JSON objects
    log_as_json: bool = False


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1-65535")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def _duration(text: str) -> float:
    try:
        seconds = parse_go_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"expected a duration of 0 or more, got {text!r}")
    return seconds


def _quantity(text: str) -> int:
    try:
        return parse_bytes(text)
    except QuantityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _go_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _size(quantity: int | None, deprecated: int | None, shift: int, default: int) -> int:
    """daprd's rule: the quantity flag wins; the deprecated flag counts in KB or MB when above
    0 and is taken as is otherwise; neither: the default."""
    if quantity is not None:
        return quantity
    if deprecated is not None:
        return deprecated << shift if deprecated > 0 else deprecated
    return default


def _go_bool(text: str) -> bool:
    """A Go bool flag's value (strconv.ParseBool)."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar",
        description="A local stand-in for daprd: the Dapr HTTP and gRPC APIs, in Python.",
    )
    parser.add_argument("--app-id", required=True, help="the app's id (required)")
    parser.add_argument("--app-port", type=_port, default=None, help="the port the app listens on")
    parser.add_argument("--app-protocol", default="http", choices=["http"])
    parser.add_argument("--app-channel-address", default="127.0.0.1")
    parser.add_argument(
        "--app-max-concurrency",
        type=_go_int,
        default=-1,
        help="invocations and deliveries at the app at once (-1: no limit)",
    )
    parser.add_argument("--dapr-http-port", type=_port, default=3500)
    parser.add_argument("--dapr-grpc-port", type=_port, default=50001)
    parser.add_argument("--dapr-listen-addresses", default="127.0.0.1")
    parser.add_argument(
        "--resources-path",
        action="append",
        default=[],
        type=Path,
        help="a folder of component/subscription/resiliency YAML files (repeatable)",
    )
    parser.add_argument(
        "--components-path",
        action="append",
        default=[],
        type=Path,
        help="deprecated alias of --resources-path",
    )
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument("--app-health-check-path", default="/healthz")
    parser.add_argument(
        "--enable-app-health-check",
        action="store_true",
        help="probe the app; while unhealthy, deliver no messages and refuse invocations",
    )
    parser.add_argument(
        "--app-health-probe-interval", type=_positive, default=5, help="seconds between probes"
    )
    parser.add_argument(
        "--app-health-probe-timeout", type=_positive, default=500, help="probe timeout in ms"
    )
    parser.add_argument(
        "--app-health-threshold",
        type=_positive,
        default=3,
        help="failed probes in a row that make the app unhealthy",
    )
    parser.add_argument(
        "--dapr-block-shutdown-duration",
        type=_duration,
        default=None,
        help="after SIGTERM, keep serving the APIs (no deliveries) this long, e.g. 10s",
    )
    parser.add_argument(
        "--dapr-graceful-shutdown-seconds",
        type=_go_int,
        default=5,
        help="how long shutdown waits for deliveries in flight and components to close "
        "(default 5; 0: no limit)",
    )
    parser.add_argument(
        "--enable-metrics",
        type=_go_bool,
        nargs="?",
        const=True,
        default=True,
        help="serve Prometheus metrics (default true; --enable-metrics=false turns them off)",
    )
    parser.add_argument("--metrics-port", type=_port, default=9090)
    parser.add_argument("--metrics-listen-address", default="127.0.0.1")
    parser.add_argument(
        "--config", default="", help="accepted for daprd compatibility; not applied (warned)"
    )
    parser.add_argument(
        "--enable-api-logging",
        type=_go_bool,
        nargs="?",
        const=True,
        default=False,
        help="log every API call (method, code, duration), as daprd does",
    )
    parser.add_argument(
        "--log-as-json", type=_go_bool, nargs="?", const=True, default=False, help="JSON log lines"
    )
    parser.add_argument(
        "--max-body-size",
        type=_quantity,
        default=None,
        help="longest request body of the HTTP and gRPC APIs, a quantity (default 4Mi)",
    )
    parser.add_argument(
        "--dapr-http-max-request-size",
        type=_go_int,
        default=None,
        help="deprecated: --max-body-size in MB",
    )
    parser.add_argument(
        "--read-buffer-size",
        type=_quantity,
        default=None,
        help="room for an HTTP request's line and headers, a quantity (default 4Ki)",
    )
    parser.add_argument(
        "--dapr-http-read-buffer-size",
        type=_go_int,
        default=None,
        help="deprecated: --read-buffer-size in KB",
    )
    return parser


def graceful_shutdown(seconds: int) -> float | None:
    """daprd's reading of the flag: negative means its default, 5 s; 0 means no limit."""
    if seconds < 0:
        return 5.0
    return float(seconds) if seconds > 0 else None


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> SidecarConfig:
    """Flags from argv, tokens and namespace from env (read once by __main__)."""
    options = build_parser().parse_args(list(argv))
    paths = tuple(options.resources_path) + tuple(options.components_path)
    if not paths:
        # daprd defaults to ~/.dapr/components; this project keeps its resources in ./components.
        paths = (Path("components"),)
    return SidecarConfig(
        app_id=options.app_id,
        app_port=options.app_port,
        app_protocol=options.app_protocol,
        app_channel_address=options.app_channel_address,
        app_max_concurrency=options.app_max_concurrency,
        http_port=options.dapr_http_port,
        grpc_port=options.dapr_grpc_port,
        listen_address=options.dapr_listen_addresses,
        resources_paths=paths,
        log_level=options.log_level,
        api_token=env.get("DAPR_API_TOKEN") or None,
        app_api_token=env.get("APP_API_TOKEN") or None,
        host_ip=env.get("DAPR_HOST_IP", ""),
        namespace=env.get("NAMESPACE", ""),
        current_namespace=env.get("NAMESPACE", "default"),
        app_health=HealthCheck(
            options.app_health_check_path,
            interval=options.app_health_probe_interval,
            timeout=options.app_health_probe_timeout / 1000,
            threshold=options.app_health_threshold,
        )
        if options.enable_app_health_check
        else None,
        config_file=options.config,
        metrics_address=(options.metrics_listen_address, options.metrics_port)
        if options.enable_metrics
        else None,
        block_shutdown_seconds=options.dapr_block_shutdown_duration,
        graceful_shutdown_seconds=graceful_shutdown(options.dapr_graceful_shutdown_seconds),
        api_logging=options.enable_api_logging,
        log_as_json=options.log_as_json,
        max_body_bytes=_size(
            options.max_body_size, options.dapr_http_max_request_size, 20, 4 << 20
        ),
        read_buffer_bytes=_size(
            options.read_buffer_size, options.dapr_http_read_buffer_size, 10, 4 << 10
        ),
    )
