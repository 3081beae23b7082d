"""The process's Dapr client: built once the sidecar answers, and the status behind its errors."""

from __future__ import annotations

import asyncio

from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.health import DaprHealth
from dapr.conf import settings as sdk_settings
from grpc import StatusCode
from grpc.aio import AioRpcError

from dapr_support.clients import message_limit
from job_orchestrator.settings import Settings


async def connect(settings: Settings, generation: int = 0) -> DaprClient:
    """The process's one Dapr client, once the sidecar's outbound health answers.

    SDK 1.18 read DAPR_* from the environment at import, and its constructor takes the health
    URL and API token from that global configuration. Point it at this replica's sidecar while
    the client is built, then put it back (two apps in one test process must not collide).
    """
    wanted = {
        "DAPR_HTTP_ENDPOINT": f"http://127.0.0.1:{settings.dapr_http_port}",
        "DAPR_API_TOKEN": settings.dapr_api_token,
    }
    saved = {name: getattr(sdk_settings, name) for name in wanted}
    for name, value in wanted.items():
        setattr(sdk_settings, name, value)
    try:
        # The constructor polls the health endpoint synchronously (up to 60 s): wait in a
        # thread first, then build the client on the loop, where its gRPC channel must live.
        await asyncio.to_thread(DaprHealth.wait_for_sidecar)
        return DaprClient(
            address=f"127.0.0.1:{settings.dapr_grpc_port}",
            max_grpc_message_length=message_limit(generation),
        )
    finally:
        for name, value in saved.items():
            setattr(sdk_settings, name, value)


def grpc_code(exc: BaseException) -> StatusCode | None:
    """The gRPC status behind an SDK error, however deeply the SDK wrapped it."""
    seen: BaseException | None = exc
    for _ in range(4):
        if isinstance(seen, DaprGrpcError | AioRpcError):
            code: StatusCode = seen.code()
            return code
        if seen is None:
            break
        seen = seen.__cause__
    return None
