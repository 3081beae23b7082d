"""The floors the services are measured against: what the same machine does with no logic at all.

Direct redis-py calls make the same Redis writes/reads the sidecar makes, without the sidecar.
`python -m bench.floors http --port N` serves a bare FastAPI `POST /jobs` on the services'
uvicorn stack; `python -m bench.floors grpc --port N --http-port M` serves the Dapr gRPC API's
GetState/SaveState/PublishEvent with empty answers on the SDK's generated stubs (what any Python
sidecar pays), plus the outbound health endpoint the SDK polls before its first call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import grpc
import redis.asyncio as redis
import uvicorn
import uvloop
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
from fastapi import FastAPI, Response
from google.protobuf import empty_pb2

log = logging.getLogger(__name__)


async def redis_get(client: redis.Redis, key: str) -> None:
    """A state read as Dapr's Redis store makes it: one HGETALL of the key's hash."""
    await client.hgetall(key)


async def redis_save(client: redis.Redis, key: str, value: bytes) -> None:
    """A state write: the value and a version in the key's hash, in one round trip."""
    await client.hset(key, mapping={"data": value, "version": 1})


async def redis_publish(client: redis.Redis, topic: str, data: bytes) -> None:
    """A publish as Dapr's Redis pub/sub makes it: one XADD to the topic's stream."""
    await client.xadd(topic, {"data": data})


async def redis_submit(client: redis.Redis, job_id: str, job: bytes, topic: str) -> None:
    """What a job submission must write at least: the job record and its event, atomically."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(job_id, mapping={"data": job, "version": 1})
        pipe.xadd(topic, {"data": job})
        await pipe.execute()


def bare_app() -> FastAPI:
    """A FastAPI app whose POST /jobs answers 202 like the orchestrator, doing nothing else."""
    app = FastAPI()

    @app.post("/jobs", status_code=202)
    async def submit(body: dict[str, Any], response: Response) -> dict[str, Any]:
        """Accept anything; the HTTP ceiling of the stack."""
        response.headers["Location"] = "/jobs/floor"
        return {"id": "floor", "status": "New", "input": body.get("input")}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    return app


class NoopDapr(dapr_pb2_grpc.DaprServicer):
    """Empty answers to the three calls scenario 6 makes."""

    async def GetState(self, request: Any, context: Any) -> Any:
        return state_pb2.GetStateResponse()

    async def SaveState(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    async def PublishEvent(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()


async def _health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer 204 to any HTTP request: the SDK only needs /v1.0/healthz/outbound to succeed."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_noop_grpc(port: int, http_port: int) -> None:
    server = grpc.aio.server()
    dapr_pb2_grpc.add_DaprServicer_to_server(NoopDapr(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{port}")
    health = await asyncio.start_server(_health, "127.0.0.1", http_port)
    await server.start()
    log.info("do-nothing Dapr gRPC server on %s (health on %s)", port, http_port)
    try:
        await server.wait_for_termination()
    finally:
        health.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__)
    parser.add_argument("kind", choices=["http", "grpc"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http-port", type=int, help="grpc: where the health endpoint listens")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if options.kind == "http":
        # Same server and settings the services run under (uvloop/httptools when installed).
        uvicorn.run(bare_app(), host="127.0.0.1", port=options.port, log_level="warning")
    else:
        if options.http_port is None:
            parser.error("grpc needs --http-port")
        # The event loop the sidecar runs on, so the two differ only in the work per call.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve_noop_grpc(options.port, options.http_port))


if __name__ == "__main__":
    main()
