"""``python -m sidecar [daprd flags]`` runs one sidecar; ``python -m sidecar run ...`` runs apps.

``run --app-id ID --app-port N [...] -- CMD ARGS`` starts a sidecar and the app like ``dapr run``;
``run -f dapr.yaml`` starts every app of a multi-app run template, each with its own sidecar.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from sidecar.api_logging import API_LOG_SCOPES
from sidecar.components import ComponentError
from sidecar.config import LOG_LEVELS, parse_config
from sidecar.logs import DaprdFormatter
from sidecar.resources import ResourceError
from sidecar.runfile import AppSpec, RunFileError, load_run_file

logger = logging.getLogger("sidecar")

_PY_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


def configure_logging(level: str, app_id: str, *, as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(DaprdFormatter(app_id, as_json=as_json))
    logging.basicConfig(level=_PY_LEVELS.get(level, logging.INFO), handlers=[handler])
    # Library chatter (uvicorn access lines, aiohttp) is not daprd's log.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    # daprd's API log scopes write at info whatever --log-level says.
    for scope in API_LOG_SCOPES:
        logging.getLogger(scope).setLevel(logging.INFO)


def run_sidecar(argv: Sequence[str]) -> int:
    from sidecar.loading import SidecarStartError
    from sidecar.runtime import serve

    config = parse_config(argv, os.environ)
    configure_logging(config.log_level, config.app_id, as_json=config.log_as_json)
    try:
        # uvloop roughly doubles the HTTP API's throughput on this workload (measured).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(config, dict(os.environ)))
    except (ResourceError, ComponentError, SidecarStartError) as exc:
        logger.critical("fatal error, the sidecar stops: %s", exc)
        return 1


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar run",
        description="Run an app with its sidecar (like `dapr run`), or every app of a run file.",
    )
    parser.add_argument("-f", "--run-file", type=Path, help="a multi-app run template (dapr.yaml)")
    parser.add_argument("--app-id", "-a")
    parser.add_argument("--app-port", "-p", type=int)
    parser.add_argument("--dapr-http-port", "-H", type=int)
    parser.add_argument("--dapr-grpc-port", "-G", type=int)
    parser.add_argument("--metrics-port", "-M", type=int, help="default: a free port")
    parser.add_argument("--app-protocol", "-P", default="http", choices=["http"])
    parser.add_argument("--app-channel-address", default="")
    parser.add_argument("--resources-path", "-d", action="append", default=[], type=Path)
    parser.add_argument("--log-level", default="", choices=["", *LOG_LEVELS])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the app's command")
    return parser


def run_apps_main(argv: Sequence[str]) -> int:
    from sidecar.runner import run_apps

    parser = run_parser()
    options = parser.parse_args(list(argv))
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if options.run_file is not None:
        try:
            specs = load_run_file(options.run_file)
        except RunFileError as exc:
            logger.error("%s", exc)
            return 2
        unapplied = sorted({field for spec in specs for field in spec.unapplied})
        if unapplied:
            logger.warning(
                "%s: not applied by the local sidecar (the Dapr CLI's daprd would): %s",
                options.run_file,
                ", ".join(unapplied),
            )
        return asyncio.run(run_apps(specs, dict(os.environ), single=False))
    if not options.app_id:
        parser.error("--app-id is required (or -f RUN_FILE)")
    if not command:
        parser.error("give the app's command after --")
    spec = AppSpec(
        app_id=options.app_id,
        app_dir=Path.cwd(),
        command=tuple(command),
        app_port=options.app_port,
        http_port=options.dapr_http_port,
        grpc_port=options.dapr_grpc_port,
        metrics_port=options.metrics_port,
        resources_paths=tuple(p.resolve() for p in options.resources_path),
        app_protocol=options.app_protocol,
        app_channel_address=options.app_channel_address,
        log_level=options.log_level,
        daprd_log="console",
        app_log="console",
    )
    return asyncio.run(run_apps([spec], dict(os.environ), single=True))


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        return run_apps_main(argv[1:])
    return run_sidecar(argv)


if __name__ == "__main__":
    sys.exit(main())
