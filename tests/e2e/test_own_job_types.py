"""The user's own job types, loaded by `python -m job_orchestrator` from JOB_HANDLERS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, one_replica
from tests.procs import PYTHON, ManagedProcess
from tests.sidecar.api.scrape import scrape_port

pytestmark = pytest.mark.e2e

SAMPLE = "tests.job_orchestrator.sample_jobs"


@pytest.fixture(scope="module")
def replica(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    tmp = tmp_path_factory.mktemp("own-job-types")
    with one_replica(redis_server.host, tmp, "own-types", JOB_HANDLERS=f"{SAMPLE}:jobs") as one:
        yield one


def test_the_users_job_types_run_beside_the_built_in_one(replica: Replica) -> None:
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        start = "/Jobs/StartJobWithTimeout"
        echoed = client.post(start, json={"type": "echo", "input": {"n": 7}, "timeoutSeconds": 20})
        assert echoed.status_code == 200, echoed.text
        assert echoed.json()["result"] == {"n": 7}
        shout = {"type": "shout", "input": {"text": "hi"}, "timeoutSeconds": 20}
        shouted = client.post(start, json=shout)
        assert shouted.status_code == 200, shouted.text
        assert shouted.json()["result"] == {"text": "HI"}
        bad = client.post(start, json={"type": "shout", "input": {"text": 1}})
        assert bad.status_code == 422
        unknown = client.post(start, json={"type": "resize"})
        assert unknown.status_code == 422
        assert "consume, echo, shout, stamp, wait" in unknown.json()["detail"]


def test_a_job_handlers_entry_that_cannot_load_stops_the_start(tmp_path: Path) -> None:
    app = ManagedProcess(
        "orchestrator-bad-handlers",
        [PYTHON, "-m", "job_orchestrator"],
        env={**Replica("bad").env("unused"), "JOB_HANDLERS": f"{SAMPLE}:not_a_registry"},
        log_dir=tmp_path,
    ).start()
    assert app.proc is not None
    assert app.proc.wait(timeout=30) == 2
    assert "is str, not a HandlerRegistry" in app.log_tail()


def test_a_result_json_cannot_carry_fails_the_job_at_once(replica: Replica) -> None:
    """A handler's result is stored as JSON reads it back: a tuple is a list and an int key a
    string; what JSON has no form for (a datetime) fails the job with the reason, once."""
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        start = "/Jobs/StartJobWithTimeout"
        plain = client.post(start, json={"type": "stamp", "timeoutSeconds": 20})
        assert plain.status_code == 200, plain.text
        assert plain.json()["result"] == {"pair": [1, 2], "3": "three"}
        again = client.get(f"/jobs/{plain.json()['id']}")
        assert again.json()["result"] == {"pair": [1, 2], "3": "three"}
        dated = client.post(
            start, json={"type": "stamp", "input": {"when": True}, "timeoutSeconds": 20}
        )
        assert dated.status_code == 200, dated.text
        job = dated.json()
        assert job["status"] == "Failed"
        assert job["attempt"] == 1
        assert job["error"] == (
            "the handler returned a datetime at result.at, which JSON cannot carry"
        )


def _state_reads(replica: Replica) -> float:
    """Reads the orchestrator's sidecar has served (get and bulk_get, as daprd counts them)."""
    _, samples = scrape_port(replica.metrics_port)
    return sum(
        count
        for (name, labels), count in samples.items()
        if name == "dapr_component_state_count" and dict(labels)["operation"] in ("get", "bulk_get")
    )


def test_a_job_created_and_run_here_is_claimed_without_a_read(replica: Replica) -> None:
    """The replica that created a job knows its etag (state.redis counts writes): its claim
    writes over it unread, so a job costs three transactions and no read."""
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        before = _state_reads(replica)
        for _ in range(5):
            job = {"type": "echo", "input": {"n": 1}, "timeoutSeconds": 20}
            done = client.post("/Jobs/StartJobWithTimeout", json=job)
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "Completed"
        assert _state_reads(replica) == before


def test_what_a_handler_changes_in_its_input_stays_its_own(replica: Replica) -> None:
    """Each attempt gets the input as submitted; the stored job keeps it as submitted."""
    job_input = {"items": [1, 2, 3], "failFirst": True}
    body = {"type": "consume", "input": job_input, "maxAttempts": 2, "timeoutSeconds": 20}
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        done = client.post("/Jobs/StartJobWithTimeout", json=body)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "Completed"
        assert done.json()["attempt"] == 2
        assert done.json()["result"] == {"taken": [3, 2, 1]}
        assert done.json()["input"] == job_input
        assert client.get(f"/jobs/{done.json()['id']}").json()["input"] == job_input
