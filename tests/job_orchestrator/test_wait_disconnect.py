"""A waiting request whose client disconnects gives its waiter slot back at once.

One real replica (``python -m job_orchestrator`` and its sidecar) with MAX_WAITERS=3, API-only so
its jobs stay New and every wait waits. Each test fills the three slots with raw sockets asking
to wait 60 s, closes them, and expects the slots free within seconds, not at the 60 s deadline.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RedisServer
from tests.job_orchestrator.stack import Replica, one_replica

MAX_WAITERS = 3
WAIT = 60  #: what the abandoned requests ask for (JOB_MAX_WAIT_SECONDS' default)
FREED_WITHIN = 5.0  #: seconds a disconnect may take to free its slot


@pytest.fixture(scope="module")
def replica(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    with one_replica(
        redis_server.host,
        tmp_path_factory.mktemp("wait-disconnect"),
        "lp",
        APP_ENV="api",
        MAX_WAITERS=str(MAX_WAITERS),
    ) as started:
        yield started


@pytest.fixture
def client(replica: Replica) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=replica.url, timeout=10) as own:
        yield own


def new_job(client: httpx.Client) -> str:
    response = client.post("/jobs", json={"type": "wait", "input": {"seconds": 30}})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def raw_request(
    replica: Replica, method: str, path: str, headers: dict[str, str], body: bytes
) -> socket.socket:
    """An HTTP/1.1 request sent on a socket of its own, whose answer is never read."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{replica.app_port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    sock = socket.create_connection(("127.0.0.1", replica.app_port), timeout=5)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def waiting(client: httpx.Client) -> int:
    count: int = client.get("/healthz").json()["waitingRequests"]
    return count


def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def fill_then_abandon(
    client: httpx.Client, replica: Replica, open_one: Callable[[int], socket.socket]
) -> str:
    """Hold every slot with requests from ``open_one``, check a new wait is refused, then
    close them all; returns the job id the probes wait on."""
    assert waiting(client) == 0
    probe_job = new_job(client)
    sockets = []
    try:
        for i in range(MAX_WAITERS):
            sockets.append(open_one(i))
        until(lambda: waiting(client) == MAX_WAITERS, 10, "the requests never started waiting")
        refused = client.get(f"/jobs/{probe_job}?wait=1")
        assert refused.status_code == 503, refused.text
    finally:
        for sock in sockets:
            sock.close()
    return probe_job


def assert_slots_freed(client: httpx.Client, probe_job: str) -> None:
    """Within seconds of the disconnects, nothing waits and a new wait is served again."""
    until(
        lambda: waiting(client) == 0,
        FREED_WITHIN,
        "the abandoned requests still wait (and hold their waiter slots)",
    )
    began = time.monotonic()
    served = client.get(f"/jobs/{probe_job}?wait=1")
    assert served.status_code == 200, served.text
    assert served.json()["status"] == "New"
    assert time.monotonic() - began >= 0.9  # it did wait: it had a slot
    submitted = client.post(
        "/jobs", json={"type": "wait", "input": {"seconds": 1}}, headers={"Prefer": "wait=0.2"}
    )
    assert submitted.status_code == 202, submitted.text


def test_a_long_poll_gives_its_slot_back_when_the_client_leaves(
    client: httpx.Client, replica: Replica
) -> None:
    job_id = new_job(client)
    probe_job = fill_then_abandon(
        client,
        replica,
        lambda _: raw_request(replica, "GET", f"/jobs/{job_id}?wait={WAIT}", {}, b""),
    )
    assert_slots_freed(client, probe_job)


@pytest.mark.parametrize(
    ("path", "extra", "headers"),
    [
        ("/jobs", {}, {"Prefer": f"wait={WAIT}"}),
        ("/Jobs/StartJobWithTimeout", {"timeoutSeconds": WAIT}, {}),
    ],
    ids=["prefer-wait", "start-job-with-timeout"],
)
def test_a_waiting_submit_stops_waiting_when_the_client_leaves_and_keeps_its_job(
    client: httpx.Client,
    replica: Replica,
    path: str,
    extra: dict[str, Any],
    headers: dict[str, str],
) -> None:
    keys = [uuid.uuid4().hex for _ in range(MAX_WAITERS)]
    body = {"type": "wait", "input": {"seconds": 30}, **extra}

    def submit(i: int) -> socket.socket:
        own = {**headers, "Idempotency-Key": keys[i]}
        return raw_request(replica, "POST", path, own, json.dumps(body).encode())

    probe_job = fill_then_abandon(client, replica, submit)
    assert_slots_freed(client, probe_job)
    # The jobs were made before the callers left, and leaving did not cancel them: the same
    # Idempotency-Key gives each one back, still New.
    for key in keys:
        # timeoutSeconds (read by StartJobWithTimeout only) is no part of the key's fingerprint.
        again = client.post(
            path, json={**body, "timeoutSeconds": 0}, headers={"Idempotency-Key": key}
        )
        assert again.status_code == 202, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["status"] == "New"
