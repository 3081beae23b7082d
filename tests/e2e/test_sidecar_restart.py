"""A sidecar restarted after a long outage is used again at once.

While the sidecar is down, gRPC waits longer and longer between reconnect attempts (after a
30 s outage the next one can be 10 s or more away); the orchestrator replaces its Dapr client
as soon as the sidecar's health answers, so its calls resume within about a second.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.inprocess import serve_inprocess
from tests.procs import wait_until, wait_until_http

pytestmark = pytest.mark.e2e

#: Long enough for gRPC's backoff to reach about 10 s (1 s, x1.6 per attempt).
OUTAGE_SECONDS = 30.0
#: Without the new client the first call would succeed only at gRPC's next attempt.
RECOVERY_SECONDS = 4.0


def test_calls_resume_soon_after_the_sidecar_is_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with serve_inprocess(redis_server.host, tmp_path) as served:
        created = served.client.post("/jobs", json={"input": {"seconds": 0}})
        assert created.status_code == 202
        path = f"/jobs/{created.json()['id']}"
        sidecar = served.replica.sidecar
        assert sidecar is not None
        sidecar.kill9()
        # Calls keep failing through the outage, as a busy service's would.
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < outage_ends:
            assert served.client.get(path).status_code == 503
            time.sleep(0.5)
        sidecar.start()
        wait_until_http(
            f"http://127.0.0.1:{served.replica.http_port}/v1.0/healthz/outbound", process=sidecar
        )
        wait_until(lambda: served.client.get(path).status_code == 200, timeout=RECOVERY_SECONDS)
