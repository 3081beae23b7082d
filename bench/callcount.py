"""Counting proxies between a service and its sidecar: how many sidecar calls one job makes.

`python -m bench.callcount --stats-port S --grpc LISTEN:TARGET --http NAME:LISTEN:TARGET ...`
forwards gRPC (app -> sidecar, unary calls as raw bytes) and HTTP (app -> sidecar, sidecar ->
app) unchanged and counts each call by method; `GET http://127.0.0.1:S/` answers the counts.
Only used in a separate counting pass: a proxy hop costs time, so timed runs go without it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter
from typing import Any

import aiohttp
import grpc
from aiohttp import web

#: Ids in paths (uuids, numbers) are folded so calls group by route.
_ID = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27,}|/\d+(?=/|$)")
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)

CONNECT_WAIT_S = 30.0
#: Calls per route name, then per method: what the stats endpoint answers.
Snapshot = dict[str, dict[str, int]]

counts: dict[str, Counter[str]] = {}


class Forward(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every unary gRPC method, forwarded byte for byte to the target channel."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.count = counts.setdefault("app->sidecar grpc", Counter())

    def service(self, details: Any) -> Any:
        method: str = details.method
        upstream = self.channel.unary_unary(method)

        async def handle(request: bytes, context: Any) -> bytes:
            self.count[method.rsplit("/", 1)[-1]] += 1
            try:
                response: bytes = await upstream(request, metadata=context.invocation_metadata())
            except grpc.aio.AioRpcError as err:
                context.set_trailing_metadata(err.trailing_metadata() or ())
                await context.abort(err.code(), err.details() or "")
            return response

        return grpc.unary_unary_rpc_method_handler(handle)


def http_forwarder(name: str, target: int, session: aiohttp.ClientSession) -> web.Application:
    count = counts.setdefault(name, Counter())

    async def forward(request: web.Request) -> web.StreamResponse:
        count[f"{request.method} {_ID.sub('/{id}', request.path)}"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        data = await request.read()
        # The proxy listens before the app does; a call arriving early waits for the app, as it
        # would have waited for the port to open.
        deadline = asyncio.get_running_loop().time() + CONNECT_WAIT_S
        while True:
            try:
                async with session.request(
                    request.method,
                    f"http://127.0.0.1:{target}{request.path_qs}",
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                ) as upstream:
                    body = await upstream.read()
                    out = {
                        k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
                    }
                    return web.Response(status=upstream.status, body=body, headers=out)
            except aiohttp.ClientConnectorError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def _serve_app(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def serve(stats_port: int, grpc_routes: list[str], http_routes: list[str]) -> None:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    server = grpc.aio.server()
    for route in grpc_routes:
        listen, target = route.split(":")
        server.add_generic_rpc_handlers((Forward(f"127.0.0.1:{target}"),))
        server.add_insecure_port(f"127.0.0.1:{listen}")
    await server.start()
    runners = []
    for route in http_routes:
        name, listen, target = route.split(":")
        runners.append(await _serve_app(http_forwarder(name, int(target), session), int(listen)))

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({name: dict(c) for name, c in counts.items()})

    stats_app = web.Application()
    stats_app.router.add_get("/", stats)
    runners.append(await _serve_app(stats_app, stats_port))
    try:
        await server.wait_for_termination()
    finally:
        for runner in runners:
            await runner.cleanup()
        await session.close()


def difference(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, int]:
    """Calls made between two snapshots, per 'route method', zero counts left out."""
    diff = {}
    for name, methods in after.items():
        for method, calls in methods.items():
            delta = calls - before.get(name, {}).get(method, 0)
            if delta:
                diff[f"{name}: {method}"] = delta
    return diff


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.callcount", description=__doc__)
    parser.add_argument("--stats-port", type=int, required=True)
    parser.add_argument("--grpc", action="append", default=[], help="LISTEN:TARGET ports")
    parser.add_argument("--http", action="append", default=[], help="NAME:LISTEN:TARGET")
    options = parser.parse_args()
    asyncio.run(serve(options.stats_port, options.grpc, options.http))


if __name__ == "__main__":
    main()
