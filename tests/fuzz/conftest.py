"""One real stack for the fuzz and bad-input tests: both sidecars and both services as processes.

Redis is the session's; this package has its own Redis database, so its streams and keys never
reach other packages' consumers. The orchestrator's waits are capped short so that generated
`timeoutSeconds` / `wait` values cannot make a single example take seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import RedisServer
from tests.microservice_x.stack import App, Sidecar, running_pair, write_components

#: This package's own Redis database (see tests/microservice_x/stack.py write_components).
REDIS_DB = 10


@dataclass
class Stack:
    orchestrator_sidecar: Sidecar
    orchestrator: App
    mx_sidecar: Sidecar
    mx: App

    def check_alive(self) -> None:
        """Fail at once, with the log, if any of the four processes died."""
        for process in (self.orchestrator_sidecar, self.mx_sidecar, self.orchestrator, self.mx):
            assert process.proc is not None
            process.proc.check_alive()


@pytest.fixture(scope="package")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("fuzz")
    components = write_components(base / "components", redis_server.host, REDIS_DB)
    short_waits = {"JOB_MAX_WAIT_SECONDS": "0.5", "JOB_DEFAULT_WAIT_SECONDS": "0.2"}
    with running_pair(components, base, short_waits) as (orchestrator, mx):
        yield Stack(orchestrator.sidecar, orchestrator, mx.sidecar, mx)
