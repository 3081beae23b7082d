"""HTTP calls the scenarios make to the services, over one pooled aiohttp session each."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from .job_times import final_received_at, parse_time

#: A short job: the built-in `wait` handler with nothing to wait for.
SHORT_JOB: dict[str, Any] = {"type": "wait", "input": {"seconds": 0}, "owner": "microservice-x"}


def session(limit: int) -> aiohttp.ClientSession:
    """A keep-alive session allowing `limit` connections (0 = unbounded)."""
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]
    sent_at: float  #: wall clock (time.time) when the request was sent
    received_at: float  #: wall clock when the answer was read


class UnexpectedStatus(Exception):
    def __init__(self, answer: Answer, expected: tuple[int, ...]) -> None:
        super().__init__(f"HTTP {answer.status} (expected {expected}): {str(answer.body)[:300]}")
        self.answer = answer


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    expect: tuple[int, ...] = (200,),
) -> Answer:
    """One request; the JSON answer (or text), with the wall-clock send/receive times."""
    sent = time.time()
    async with http.request(method, url, json=json_body, headers=headers) as resp:
        raw = await resp.read()
        received = time.time()
        # Let the other callers whose answers came in with this one take their times too before
        # this caller parses and sends its next request: else the last answers of a burst are
        # stamped after the others' next submissions (the client's CPU, not the service's).
        await asyncio.sleep(0)
        body: Any
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = raw.decode(errors="replace")
        answer = Answer(resp.status, body, dict(resp.headers), sent, received)
    if answer.status not in expect:
        raise UnexpectedStatus(answer, expect)
    return answer


def job_time(job: dict[str, Any], field: str) -> float:
    """A job's timestamp field (createdAt, completedAt ...) as epoch seconds."""
    value = parse_time(job.get(field))
    if value is None:
        raise ValueError(f"job {job.get('id')} has no {field}: {job}")
    return value


async def collect_views(
    http: aiohttp.ClientSession, msx_url: str, job_ids: list[str], *, timeout: float
) -> dict[str, dict[str, Any]]:
    """microservice-x's view of each job, once it holds the job's final event (bounded wait).

    Jobs whose final event has not arrived by the deadline are left out; callers count them.
    """
    views: dict[str, dict[str, Any]] = {}
    pending = list(job_ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for job_id in pending:
            async with http.get(f"{msx_url}/jobs/{job_id}") as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
            if isinstance(body, dict) and final_received_at(body) is not None:
                views[job_id] = body
            else:
                still.append(job_id)
        pending = still
        if pending:
            await asyncio.sleep(0.05)
    return views
