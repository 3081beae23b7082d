"""``python -m job_orchestrator``: read the environment once and serve the app with uvicorn."""

from __future__ import annotations

import os

from dapr_support import grpc_engine

# Before anything imports grpc, which reads it once (dapr_support/grpc_engine.py).
os.environ.setdefault(grpc_engine.VARIABLE, grpc_engine.POLLING_ENGINE)

import logging
import math
import socket
import sys
from collections.abc import Callable

import uvicorn

from job_orchestrator.app import begin_shutdown, create_app
from job_orchestrator.handler_modules import HandlerModuleError, load_registry
from job_orchestrator.settings import Settings, SettingsError
from job_orchestrator.worker import HAND_BACK_SECONDS


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env(os.environ)
        registry = load_registry(settings.job_handlers)
    except (SettingsError, HandlerModuleError) as exc:
        logging.getLogger("job_orchestrator").error("bad configuration: %s", exc)
        return 2
    app = create_app(settings, registry)
    # Access logs cost CPU on every request; uvicorn's own errors are still logged.
    config = uvicorn.Config(
        app,
        host=settings.bind_host,
        port=settings.app_port,
        access_log=False,
        log_level="warning",
        # The worker hands back what still runs when the grace ends; uvicorn only cuts off
        # what is left after that (the hand-back itself is bounded).
        timeout_graceful_shutdown=settings.shutdown_grace_seconds
        + math.ceil(HAND_BACK_SECONDS)
        + 1,
    )
    Server(config, on_shutdown=lambda: begin_shutdown(app)).run()
    return 0


class Server(uvicorn.Server):
    """uvicorn's server, telling the app as soon as a shutdown (SIGTERM, Ctrl-C) begins.

    uvicorn's lifespan shutdown comes only after every open request ended or the grace time
    ran out, too late for requests that are merely waiting.
    """

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)


if __name__ == "__main__":
    sys.exit(main())
