"""The orchestrator app served in this process (uvicorn in a thread) beside a real sidecar."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from job_orchestrator.app import create_app
from job_orchestrator.handlers import HandlerRegistry, JobContext, JobFailure, default_registry
from job_orchestrator.settings import Settings
from tests.job_orchestrator.stack import Replica, log_dir_for, write_components
from tests.procs import wait_until_http


@dataclass
class InProcess:
    client: httpx.Client
    replica: Replica
    settings: Settings
    topic: str


def make_registry() -> HandlerRegistry:
    """The built-in types plus a few that make failure paths easy to produce."""
    registry = default_registry()
    attempts: dict[str, int] = {}

    @registry.register("flaky")
    async def flaky(ctx: JobContext) -> dict[str, int]:
        """Fails until its attempt number reaches input.succeedOn."""
        attempts[ctx.job_id] = attempts.get(ctx.job_id, 0) + 1
        if attempts[ctx.job_id] < int(ctx.input.get("succeedOn", 99)):
            raise RuntimeError(f"boom {attempts[ctx.job_id]}")
        return {"attempts": attempts[ctx.job_id]}

    @registry.register("plain")
    def plain(ctx: JobContext) -> dict[str, str]:
        """A plain function: it runs in a thread."""
        ctx.report_progress(50, "half")
        return {"thread": threading.current_thread().name}

    @registry.register("halfway")
    async def halfway(ctx: JobContext) -> None:
        """Reports progress, then fails before the throttled write carried it."""
        ctx.report_progress(40, "downloading")
        raise JobFailure("the download broke off")

    @registry.register("quiet")
    async def quiet(ctx: JobContext) -> str:
        """Works input.seconds without reporting progress: only lease renewals keep it."""
        await asyncio.sleep(float(ctx.input.get("seconds", 1)))
        return "done"

    @registry.register("stubborn")
    async def stubborn(ctx: JobContext) -> str:
        """Keeps working until it sees the cancellation."""
        for _ in range(600):
            if ctx.cancelled:
                return "noticed"
            await asyncio.sleep(0.1)
        return "never canceled"

    return registry


@contextlib.contextmanager
def serve_inprocess(
    redis_host: str,
    tmp: Path,
    state: tuple[str, list[dict[str, Any]]] | None = None,
    secrets: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Iterator[InProcess]:
    """A real sidecar process and the app served by uvicorn in a thread of this process."""
    topic = f"job-events-{uuid.uuid4().hex[:8]}"
    resources = write_components(
        tmp / "resources",
        redis_host,
        topic,
        lease="3s",
        redeliver="1s",
        state=state,
        secrets=secrets,
    )
    replica = Replica("inproc")
    replica.start_sidecar(resources, log_dir_for(tmp))
    settings = Settings(
        **{
            "app_port": replica.app_port,
            "dapr_grpc_port": replica.grpc_port,
            "dapr_http_port": replica.http_port,
            "replica_name": f"inproc-{uuid.uuid4().hex[:6]}",
            "events_topic": topic,
            "lease_seconds": 3.0,
            "retry_backoff_seconds": 0.2,
            "max_body_bytes": 4096,
            "default_wait_seconds": 5.0,
            "max_wait_seconds": 10.0,
            **overrides,
        }
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, make_registry()),
            host="127.0.0.1",
            port=replica.app_port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, name="orchestrator-app", daemon=True)
    thread.start()
    try:
        wait_until_http(f"{replica.url}/healthz", process=replica.sidecar, timeout=60)
        assert replica.sidecar is not None
        wait_until_http(
            f"http://127.0.0.1:{replica.http_port}/v1.0/healthz", process=replica.sidecar
        )
        with httpx.Client(base_url=replica.url, timeout=30) as client:
            yield InProcess(client, replica, settings, topic)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        replica.stop()
