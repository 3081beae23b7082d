"""The user's own job types, loaded by `python -m job_orchestrator` from JOB_HANDLERS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, one_replica
from tests.procs import PYTHON, ManagedProcess, wait_until
from tests.sidecar.api.scrape import scrape_port

pytestmark = pytest.mark.e2e

SAMPLE = "tests.job_orchestrator.sample_jobs"


@pytest.fixture(scope="module")
def replica(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    tmp = tmp_path_factory.mktemp("own-job-types")
    # No requeue: its ledger directory is read every 30 s on a timer, which would make
    # the read count below depend on when that test runs.
    env = {"JOB_HANDLERS": f"{SAMPLE}:jobs", "JOB_REQUEUE_AFTER_SECONDS": "0"}
    with one_replica(redis_server.host, tmp, "own-types", **env) as one:
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
        assert "blob, cli, consume, echo, hog, meet, shout, stamp, wait" in unknown.json()["detail"]


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


def _blob(client: httpx.Client, **job_input: Any) -> dict[str, Any]:
    """A `blob` job, waited for until final."""
    body = {"type": "blob", "input": job_input, "timeoutSeconds": 20}
    done = client.post("/Jobs/StartJobWithTimeout", json=body)
    assert done.status_code == 200, done.text
    job: dict[str, Any] = done.json()
    assert client.get(f"/jobs/{job['id']}").json() == job  # readable, and stored as answered
    return job


def test_a_result_too_large_or_not_unicode_fails_the_job_at_once(replica: Replica) -> None:
    """Such a result could not be written (over what the sidecar takes: the job ran again
    after each lease, then failed as a lost worker minutes later) or not answered (an unpaired
    surrogate: every answer carrying the job failed with 500). Now the job fails at once."""
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        fits = _blob(client, size=200_000)
        assert fits["status"] == "Completed"
        assert fits["result"] == {"blob": "x" * 200_000}
        big = _blob(client, size=300_000)
        assert (big["status"], big["attempt"]) == ("Failed", 1)
        assert big["error"].startswith(
            "the handler returned a result of 300011 bytes of JSON; the limit is 262144 "
            "(MAX_RESULT_BYTES)"
        )
        odd = _blob(client, size=2, unpaired=True)
        assert (odd["status"], odd["attempt"]) == ("Failed", 1)
        assert odd["error"] == (
            "the handler returned text holding an unpaired UTF-16 surrogate at result.blob, "
            "which is not Unicode and cannot be stored"
        )


def test_a_handlers_messages_are_stored_as_unicode_and_cut_when_long(replica: Replica) -> None:
    """Progress and error text from a handler: an unpaired surrogate stored as U+FFFD, text
    past 4,096 characters cut (megabytes of it could not be written)."""
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        said = _blob(client, size=2, unpaired=True, into="progress")
        assert said["status"] == "Completed"
        assert said["progress"]["message"] == "xx\ufffd"
        long = _blob(client, size=3_000_000, into="progress")
        assert long["progress"]["message"] == "x" * 4096 + "... (2995904 more characters cut)"
        failed = _blob(client, size=2, unpaired=True, into="error")
        assert (failed["status"], failed["error"]) == ("Failed", "xx\ufffd")
        failed = _blob(client, size=3_000_000, into="error")
        assert (failed["status"], failed["attempt"]) == ("Failed", 1)
        assert failed["error"] == "x" * 4096 + "... (2995904 more characters cut)"


def test_a_completed_job_the_sidecar_refuses_as_too_large_fails_saying_so(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With MAX_RESULT_BYTES above what the sidecar takes in one message (4 MiB by default),
    the completed job's write is refused: the job fails at once instead of running again."""
    allowing = {"JOB_HANDLERS": f"{SAMPLE}:jobs", "MAX_RESULT_BYTES": str(16 * 1024 * 1024)}
    with (
        one_replica(redis_server.host, tmp_path, "too-large", **allowing) as one,
        httpx.Client(base_url=one.url, timeout=30) as client,
    ):
        job = _blob(client, size=3_000_000)
        assert (job["status"], job["attempt"], job["result"]) == ("Failed", 1, None)
        assert job["error"].startswith("the sidecar refused the completed job as too large (")
        assert "MAX_RESULT_BYTES must stay below what the sidecar accepts" in job["error"]


def test_a_handler_that_exits_fails_its_job_and_the_replica_goes_on(replica: Replica) -> None:
    """argparse calls sys.exit(2) on bad arguments: that stopped the whole replica (and each
    replica that took the job over after it). Now only the job fails, saying why."""
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        start = "/Jobs/StartJobWithTimeout"
        bad = client.post(start, json={"type": "cli", "input": {"args": []}, "timeoutSeconds": 20})
        assert bad.status_code == 200, bad.text
        assert (bad.json()["status"], bad.json()["attempt"]) == ("Failed", 1)
        assert bad.json()["error"] == (
            "HandlerExit: the handler called sys.exit(2), which would stop the replica; "
            "raise JobFailure to fail a job"
        )
        good = {"type": "cli", "input": {"args": ["--count", "3"]}, "timeoutSeconds": 20}
        done = client.post(start, json=good)
        assert done.status_code == 200, done.text
        assert done.json()["result"] == {"count": 3}


def test_plain_function_handlers_run_as_many_at_once_as_the_replica_takes(
    replica: Replica,
) -> None:
    """Twelve plain-function jobs meet at a barrier, so they pass only if all run at once.
    They ran in the event loop's default executor: 6 threads on two cores, the other jobs
    shown running while they waited for one."""
    group = uuid.uuid4().hex
    body = {"type": "meet", "input": {"group": group, "parties": 12}, "timeoutSeconds": 30}

    def start(_: int) -> httpx.Response:
        with httpx.Client(base_url=replica.url, timeout=40) as client:
            return client.post("/Jobs/StartJobWithTimeout", json=body)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(start, range(12)))
    assert [(a.status_code, a.json()["status"], a.json()["error"]) for a in answers] == [
        (200, "Completed", None)
    ] * 12


def test_an_async_handler_that_blocks_the_loop_is_reported(replica: Replica) -> None:
    """Blocking in an async handler holds up the whole replica; its log says so, naming it."""
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        body = {"type": "hog", "input": {"seconds": 1.6}, "timeoutSeconds": 20}
        done = client.post("/Jobs/StartJobWithTimeout", json=body)
        assert done.status_code == 200, done.text
        assert replica.app is not None
        wait_until(lambda: "the event loop was held up for" in replica.app.log_tail(), timeout=5)
        warning = replica.app.log_tail().split("the event loop was held up for ")[-1]
        assert f"(jobs running here: hog {done.json()['id']}); an async handler" in warning


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
