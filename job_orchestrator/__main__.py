"""``python -m job_orchestrator``: read the environment once and serve the app with uvicorn."""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from job_orchestrator.app import create_app
from job_orchestrator.settings import Settings, SettingsError


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        logging.getLogger("job_orchestrator").error("bad configuration: %s", exc)
        return 2
    # Access logs cost CPU on every request; uvicorn's own errors are still logged.
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.app_port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
