"""The README's swap: components/alternatives/statestore-sqlite.yaml copied over statestore.yaml.

Everything else is the project's components as shipped (topic scoping on `pubsub`, the outbox's
internal topic on `joboutbox`). With the state in SQLite and the broker in Redis, the outbox goes
daprd's long way: each change is published to the internal topic on `joboutbox` before its
commit and relayed to `job-events` after it, so this is the path the orchestrator takes under
daprd on any store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.conftest import RedisServer
from tests.microservice_x.stack import (
    MX,
    App,
    get_json,
    http,
    running_pair,
    wait_for,
    write_components,
)
from tests.procs import ROOT

#: This module's own Redis database (see write_components).
REDIS_DB = 8

pytestmark = pytest.mark.e2e


def swap_in_sqlite(components: Path, database: Path) -> None:
    """Do what the README says, pointing the connection string at a file of the test's."""
    alternative = ROOT / "components" / "alternatives" / "statestore-sqlite.yaml"
    doc = yaml.safe_load(alternative.read_text())
    for item in doc["spec"]["metadata"]:
        if item["name"] == "connectionString":
            item["value"] = str(database)
    (components / "statestore.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[App, App, Path]]:
    base = tmp_path_factory.mktemp("swapped-store")
    components = write_components(base / "components", redis_server.host, REDIS_DB)
    database = base / "state.db"
    swap_in_sqlite(components, database)
    with running_pair(components, base) as (orchestrator, mx):
        yield orchestrator, mx, database


def test_a_job_runs_and_its_events_arrive_with_the_state_in_sqlite(
    pair: tuple[App, App, Path], redis_server: RedisServer
) -> None:
    orchestrator, mx, database = pair
    status, _, answer = http(
        "POST",
        f"{orchestrator.url}/Jobs/StartJobWithTimeout",
        {"input": {"seconds": 0.2}, "owner": MX, "timeoutSeconds": 10},
    )
    assert status == 200, answer
    job_id = answer["id"]
    assert answer["status"] == "Completed"

    def view() -> dict[str, Any] | None:
        code, _, body = http("GET", f"{mx.url}/jobs/{job_id}")
        return body if code == 200 and body["status"] == "Completed" else None

    seen: dict[str, Any] = wait_for(view, timeout=20, what="microservice-x's completed view")
    assert [e["sequence"] for e in seen["events"]] == list(range(1, answer["sequence"] + 1))
    assert get_json(f"{orchestrator.url}/jobs/{job_id}")["status"] == "Completed"
    # The job lives in the SQLite file, not in Redis.
    with sqlite3.connect(database) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM state")]
    assert f"job-orchestrator||job-{job_id}" in keys
    # Its events went the long way: through the internal topic on `joboutbox` (same Redis
    # database as `pubsub` here), named as daprd names it outside Kubernetes.
    broker = redis.Redis(port=redis_server.port, db=REDIS_DB)
    try:
        internal = broker.xrange("defaultjob-orchestratorjob-eventsoutbox")
        published = broker.xrange("job-events")
    finally:
        broker.close()
    assert any(job_id.encode() in fields[b"data"] for _, fields in internal)
    mine = [f for _, f in published if job_id.encode() in f[b"data"]]
    assert len(mine) >= answer["sequence"]
