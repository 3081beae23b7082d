"""The pair run by the runner as ``DAPR_SECURE=1 ./start.sh`` runs it: tokens and API keys on.

`python -m sidecar run -f` gets DAPR_API_TOKEN, APP_API_TOKEN, API_KEYS and ORCHESTRATOR_API_KEY
in its environment and passes them to both sidecars and both apps. A job started through
microservice-x must then go all the way: invocation with the key, the orchestrator's SDK calls
with the API token, deliveries to both apps with the app token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.microservice_x.stack import http, wait_for, write_components
from tests.procs import PYTHON, ManagedProcess, free_port, wait_until_http

DAPR_TOKEN = "dapr-" + uuid.uuid4().hex
APP_TOKEN = "app-" + uuid.uuid4().hex
MX_KEY = "mx-" + uuid.uuid4().hex
PORTAL_KEY = "portal-" + uuid.uuid4().hex
#: This module's own Redis database (see write_components).
REDIS_DB = 9

pytestmark = pytest.mark.e2e


@dataclass
class Ports:
    app: int
    http: int
    grpc: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app}"

    @property
    def sidecar(self) -> str:
        return f"http://127.0.0.1:{self.http}"


@dataclass
class SecureRun:
    orchestrator: Ports
    mx: Ports


def run_file(base: Path, components: Path, orchestrator: Ports, mx: Ports) -> Path:
    apps = [
        ("job-orchestrator", "job_orchestrator", orchestrator),
        ("microservice-x", "microservice_x", mx),
    ]
    template = {
        "version": 1,
        "common": {
            "resourcesPaths": [str(components)],
            "appHealthCheckPath": "/healthz",
            "daprdLogDestination": "console",
            "appLogDestination": "console",
            "env": {"APP_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"},
        },
        "apps": [
            {
                "appID": app_id,
                "appDirPath": str(base),
                "appPort": ports.app,
                "daprHTTPPort": ports.http,
                "daprGRPCPort": ports.grpc,
                "command": [PYTHON, "-m", module],
            }
            for app_id, module, ports in apps
        ],
    }
    path = base / "dapr.yaml"
    path.write_text(json.dumps(template))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def secure_run(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureRun]:
    base = tmp_path_factory.mktemp("secure-run")
    components = write_components(base / "components", redis_server.host, REDIS_DB)
    run = SecureRun(*(Ports(free_port(), free_port(), free_port()) for _ in range(2)))
    runner = ManagedProcess(
        "secure-runner",
        [
            PYTHON,
            "-m",
            "sidecar",
            "run",
            "-f",
            str(run_file(base, components, *vars(run).values())),
        ],
        env={
            "DAPR_API_TOKEN": DAPR_TOKEN,
            "APP_API_TOKEN": APP_TOKEN,
            "API_KEYS": f"{MX_KEY}=microservice-x,{PORTAL_KEY}=portal",
            "ORCHESTRATOR_API_KEY": MX_KEY,
        },
        log_dir=base,
    ).start()
    try:
        for ports in (run.orchestrator, run.mx):
            wait_until_http(f"{ports.url}/healthz", timeout=60, process=runner)
            wait_until_http(f"{ports.sidecar}/v1.0/healthz", timeout=30, process=runner)
        yield run
    finally:
        runner.stop()


def test_a_job_through_microservice_x_with_everything_secured(secure_run: SecureRun) -> None:
    mx, orchestrator = secure_run.mx, secure_run.orchestrator
    status, _, started = http("POST", f"{mx.url}/jobs", {"type": "wait", "input": {"seconds": 0}})
    assert status == 202, started
    job_id = started["id"]
    assert started["job"]["owner"] == "microservice-x"  # the owner of microservice-x's key

    def completed() -> bool:
        status, _, view = http("GET", f"{mx.url}/jobs/{job_id}")
        return status == 200 and view["status"] == "Completed"

    wait_for(completed, timeout=30, what="the job's events at microservice-x")
    key = {"X-API-Key": MX_KEY}
    status, _, job = http("GET", f"{orchestrator.url}/jobs/{job_id}", headers=key)
    assert (status, job["status"]) == (200, "Completed")
    # Another key's owner does not see it; no key at all is 401.
    portal = {"Authorization": f"Bearer {PORTAL_KEY}"}
    assert http("GET", f"{orchestrator.url}/jobs/{job_id}", headers=portal)[0] == 404
    assert http("GET", f"{orchestrator.url}/jobs/{job_id}")[0] == 401


def test_only_sidecars_reach_the_internal_routes(secure_run: SecureRun) -> None:
    event = {"specversion": "1.0", "id": "x", "source": "t", "type": "job.created", "data": {}}
    for url in (
        f"{secure_run.orchestrator.url}/internal/jobs/run",
        f"{secure_run.orchestrator.url}/internal/jobs/changed",
        f"{secure_run.mx.url}/events/jobs",
    ):
        assert http("POST", url, event)[0] == 401
        assert http("POST", url, event, headers={"dapr-api-token": DAPR_TOKEN})[0] == 401
    for ports in (secure_run.orchestrator, secure_run.mx):
        metadata = f"{ports.sidecar}/v1.0/metadata"
        assert http("GET", metadata)[0] == 401
        assert http("GET", metadata, headers={"dapr-api-token": DAPR_TOKEN})[0] == 200
