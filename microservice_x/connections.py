"""The process's long-lived connections to its sidecar: one SDK gRPC client, one HTTP session."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from dapr.aio.clients import DaprClient
from dapr.conf import settings as sdk_settings

from dapr_support.clients import message_limit
from microservice_x.settings import Settings

logger = logging.getLogger(__name__)


class SidecarUnavailable(RuntimeError):
    """The sidecar did not become ready in time; the service cannot start without it."""


def open_http_session(settings: Settings) -> aiohttp.ClientSession:
    """One pooled session for the sidecar's HTTP API (health, service invocation)."""
    headers = {"dapr-api-token": settings.dapr_api_token} if settings.dapr_api_token else {}
    return aiohttp.ClientSession(
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=settings.invoke_timeout_seconds),
    )


async def wait_for_sidecar(session: aiohttp.ClientSession, settings: Settings) -> None:
    """Poll the sidecar's outbound health until it answers 2xx or the deadline passes.

    Done here, asynchronously, so the SDK's own blocking probe in DaprClient() succeeds at once.
    """
    url = f"{settings.dapr_http_url}/v1.0/healthz/outbound"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.sidecar_wait_seconds
    last = "no answer yet"
    while True:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if 200 <= response.status < 300:
                    return
                last = f"status {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = repr(exc)
        if loop.time() >= deadline:
            raise SidecarUnavailable(
                f"the Dapr sidecar at {url} was not ready within "
                f"{settings.sidecar_wait_seconds:g}s ({last})"
            )
        await asyncio.sleep(0.1)


def open_dapr_client(settings: Settings, generation: int = 0) -> DaprClient:
    """The SDK's aio client on this service's sidecar, whatever the environment said at import.

    SDK 1.18 reads DAPR_* once at `import dapr`, and its constructor probes the sidecar's HTTP
    health and picks the API token from that global configuration. Point it at our sidecar for
    the constructor only, then put it back, so two apps in one process (tests) do not collide.
    """
    wanted = {
        "DAPR_HTTP_ENDPOINT": settings.dapr_http_url,
        "DAPR_API_TOKEN": settings.dapr_api_token,
        "DAPR_HEALTH_TIMEOUT": settings.sidecar_wait_seconds,
    }
    saved = {name: getattr(sdk_settings, name) for name in wanted}
    for name, value in wanted.items():
        setattr(sdk_settings, name, value)
    try:
        return DaprClient(
            address=settings.dapr_grpc_address,
            max_grpc_message_length=message_limit(generation),
        )
    finally:
        for name, value in saved.items():
            setattr(sdk_settings, name, value)


async def renew_dapr_client(
    session: aiohttp.ClientSession, settings: Settings, generation: int
) -> DaprClient | None:
    """A client on a fresh gRPC channel if the sidecar's health answers now, else None."""
    if not await sidecar_answers(session, settings):
        return None
    return open_dapr_client(settings, generation)


async def sidecar_answers(session: aiohttp.ClientSession, settings: Settings) -> bool:
    """One probe of the sidecar's outbound health (2xx within a second), no retry."""
    url = f"{settings.dapr_http_url}/v1.0/healthz/outbound"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
            return 200 <= response.status < 300
    except (aiohttp.ClientError, TimeoutError):
        return False


async def close_dapr_client(client: DaprClient) -> None:
    await client.close()  # type: ignore[no-untyped-call]
