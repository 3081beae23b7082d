"""microservice-x's /readyz follows its sidecar; /healthz (liveness) does not."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from microservice_x.app import create_app
from microservice_x.settings import Settings
from tests.conftest import RedisServer
from tests.microservice_x.stack import state_sidecar

#: Its own app id, so nothing it could write meets test_api's keys in their shared database.
APP_ID = "microservice-x-ready-test"
REDIS_DB = 13


@pytest.mark.asyncio
async def test_readyz_follows_the_sidecar(redis_server: RedisServer, tmp_path: Path) -> None:
    with state_sidecar(APP_ID, tmp_path, redis_server.host, REDIS_DB) as sidecar:
        settings = Settings(
            app_id=APP_ID,
            dapr_http_port=sidecar.http_port,
            dapr_grpc_port=sidecar.grpc_port,
            sidecar_wait_seconds=20,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mx") as client:
                ready = await client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json() == {"status": "ready", "appId": APP_ID}

                assert sidecar.proc is not None
                sidecar.proc.kill9()
                unready = await client.get("/readyz")
                assert unready.status_code == 503, unready.text
                assert unready.headers["content-type"] == "application/problem+json"
                assert unready.headers["retry-after"] == "2"
                problem = unready.json()
                assert problem["title"] == "Not ready"
                assert settings.dapr_http_url in problem["detail"]
                assert (await client.get("/healthz")).status_code == 200
