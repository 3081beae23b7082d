"""Session-wide real backends: one Redis and (when installed) one PostgreSQL for the suite."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.localredis import start_redis
from tests.procs import PostgresCluster, free_port, postgres_bin_dir


@pytest.fixture(scope="session", autouse=True)
def _private_name_registry() -> Iterator[None]:
    """Sidecars started by tests resolve app ids only among themselves, never a developer's."""
    folder = tempfile.mkdtemp(prefix="dapr-registry-")
    previous = os.environ.get("DAPR_LOCAL_REGISTRY_DIR")
    os.environ["DAPR_LOCAL_REGISTRY_DIR"] = folder
    yield
    if previous is None:
        os.environ.pop("DAPR_LOCAL_REGISTRY_DIR", None)
    else:
        os.environ["DAPR_LOCAL_REGISTRY_DIR"] = previous
    shutil.rmtree(folder, ignore_errors=True)


class RedisServer:
    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self.proc = start_redis(port, data_dir)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.proc = start_redis(self.port, self.data_dir)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    data = Path(tempfile.mkdtemp(prefix="redis-test-"))
    server = RedisServer(free_port(), data)
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis only this test stops, restarts or reconfigures."""
    data = Path(tempfile.mkdtemp(prefix="redis-own-"))
    server = RedisServer(free_port(), data)
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    if postgres_bin_dir() is None:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but PostgreSQL server binaries are not installed")
        pytest.skip("PostgreSQL server binaries are not installed (.ci/run installs them)")
    cluster = PostgresCluster(free_port()).start()
    yield cluster
    cluster.stop()
