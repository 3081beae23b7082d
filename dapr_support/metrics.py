"""Serving a Prometheus registry from a FastAPI route, as both services do at ``GET /metrics``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.responses import Response

#: The route's OpenAPI ``responses``.
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text format (OpenMetrics when the Accept header asks)",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


def metrics_response(registry: CollectorRegistry, accept: str) -> Response:
    """Every metric of ``registry``: OpenMetrics when ``accept`` asks for it (as Prometheus
    does), else the classic text format."""
    encode, media_type = choose_encoder(accept)
    return Response(encode(registry), media_type=media_type)
