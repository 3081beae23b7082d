"""Starting jobs on the orchestrator through Dapr service invocation (HTTP, via our sidecar)."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import orjson

from microservice_x.errors import (
    OrchestratorBadAnswer,
    OrchestratorRefusedUs,
    OrchestratorRejected,
    OrchestratorUnavailable,
)
from microservice_x.settings import Settings

logger = logging.getLogger(__name__)


class OrchestratorClient:
    """POST /jobs on the app id `job-orchestrator`, wherever Dapr finds it."""

    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._session = session
        self._app_id = settings.orchestrator_app_id
        self._owner = settings.app_id  #: the owner of every job started here
        self._key_headers = (
            {"X-API-Key": settings.orchestrator_api_key} if settings.orchestrator_api_key else {}
        )
        self._url = (
            f"{settings.dapr_http_url}/v1.0/invoke/{settings.orchestrator_app_id}/method/jobs"
        )

    async def start_job(
        self, body: dict[str, Any], idempotency_key: str | None, traceparent: str | None = None
    ) -> dict[str, Any]:
        """Submit a job; return the job the orchestrator answered with (it has an `id`).

        ``traceparent`` goes along (Dapr passes it on), so the job's events continue that trace.
        """
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **self._key_headers,
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if traceparent:
            headers["traceparent"] = traceparent
        try:
            async with self._session.post(
                self._url, data=_json_bytes(body), headers=headers
            ) as response:
                status = response.status
                raw = await response.read()
                retry_after = _seconds(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OrchestratorUnavailable(
                f"no answer from the Dapr sidecar invoking {self._app_id!r}: {exc!r}"
            ) from exc
        try:
            answer: object = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            answer = None
        if 200 <= status < 300:
            if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
                raise OrchestratorBadAnswer(
                    f"{self._app_id!r} answered {status} without a job id: {raw[:200]!r}"
                )
            return answer
        if isinstance(answer, dict) and "errorCode" in answer:
            # The sidecar's own error (e.g. ERR_DIRECT_INVOKE): the orchestrator was not reached.
            logger.warning("invoking %s failed: %s", self._app_id, answer)
            raise OrchestratorUnavailable(
                f"Dapr could not invoke {self._app_id!r}: "
                f"{answer.get('errorCode')}: {answer.get('message')}"
            )
        if status in (401, 403):
            # Relayed, it would ask the caller for credentials it has no way to give.
            said = answer.get("detail") if isinstance(answer, dict) else None
            logger.error(
                "%s refused this service's credentials (%s): check ORCHESTRATOR_API_KEY",
                self._app_id,
                status,
            )
            raise OrchestratorRefusedUs(
                f"{self._app_id!r} answered {status}: {said or 'no detail'}; check "
                "microservice-x's ORCHESTRATOR_API_KEY (set, and bound to owner "
                f"{self._owner!r})"
            )
        if isinstance(answer, dict):
            raise OrchestratorRejected(status, answer, retry_after)
        said = f"{self._app_id!r} answered {status}: {raw[:500].decode('utf-8', errors='replace')}"
        if status >= 500:
            raise OrchestratorUnavailable(said)
        raise OrchestratorRejected(status, {"detail": said})


def _seconds(header: str | None) -> int | None:
    """A Retry-After given in seconds (the orchestrator's form); None for anything else."""
    if header is None or not header.strip().isdigit():
        return None
    return int(header.strip()) or None


def _json_bytes(body: dict[str, Any]) -> bytes:
    """orjson, or the standard library's encoder for what orjson refuses: integers past 64 bits,
    which JSON allows and the orchestrator accepts."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
