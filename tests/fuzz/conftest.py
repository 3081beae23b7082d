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
from tests.microservice_x.stack import MX, App, Sidecar, write_components
from tests.procs import free_port

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
    registry = base / "registry"
    orchestrator_port, mx_port = free_port(), free_port()
    orchestrator_sidecar = Sidecar(
        "job-orchestrator", components, registry, orchestrator_port, log_dir=base
    )
    mx_sidecar = Sidecar(MX, components, registry, mx_port, log_dir=base)
    orchestrator = App(
        "job_orchestrator",
        orchestrator_sidecar,
        orchestrator_port,
        extra_env={"JOB_MAX_WAIT_SECONDS": "0.5", "JOB_DEFAULT_WAIT_SECONDS": "0.2"},
    )
    mx = App("microservice_x", mx_sidecar, mx_port)
    processes = (orchestrator_sidecar, mx_sidecar, orchestrator, mx)
    try:
        for process in processes:
            process.start()
        orchestrator_sidecar.wait_ready()
        mx_sidecar.wait_ready()
        yield Stack(orchestrator_sidecar, orchestrator, mx_sidecar, mx)
    finally:
        for process in reversed(processes):
            process.stop()
