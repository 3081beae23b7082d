"""`python -m microservice_x`: serve the app on $APP_PORT (default 8001) with uvicorn."""

from __future__ import annotations

import os

from dapr_support import grpc_engine

# Before anything imports grpc, which reads it once (dapr_support/grpc_engine.py).
os.environ.setdefault(grpc_engine.VARIABLE, grpc_engine.POLLING_ENGINE)

import logging

import uvicorn

from microservice_x.app import create_app
from microservice_x.settings import Settings


def main() -> None:
    settings = Settings.from_env(os.environ)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        create_app(settings),
        host=settings.app_host,
        port=settings.app_port,
        log_level=settings.log_level.lower(),
        # Every delivery is an HTTP request; the subscriber logs its own line per event instead.
        access_log=False,
    )


if __name__ == "__main__":
    main()
