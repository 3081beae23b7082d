"""The HTTP postman: a subscribed event as a POST to the app, read by daprd's response table.

As daprd's ``subscription/postman/http``: the body is the CloudEvent, the broker message's
metadata travels as headers, and the answer (status code and ``{"status": ...}`` body, its key
matched as Go matches it, in any case) decides success, retry or drop.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from sidecar import cloudevents, gojson, json_reader
from sidecar.app_channel import AppChannel, AppUnreachableError
from sidecar.metrics import ComponentMetrics, ms_since
from sidecar.postman import INGRESS, Outcome, RetriableError
from sidecar.pubsub.base import Message

logger = logging.getLogger(__name__)

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "traceparent", "tracestate", "dapr-api-token"}
)


def interpret_response(status: int, body: bytes) -> tuple[Outcome, str]:
    """daprd's reading of the app's answer to a pub/sub POST (outcome, app status if any)."""
    if 200 <= status <= 299:
        try:
            # Go's json.Decoder reads the first value only; trailing bytes are ignored. An
            # empty body (EOF) or one Go cannot read is a success without status check.
            value = json_reader.go_decode(body)
        except ValueError:
            return Outcome.SUCCESS, ""
        if value is None:
            return Outcome.SUCCESS, ""
        if not isinstance(value, dict):
            return Outcome.SUCCESS, ""  # Go cannot decode it into AppResponse: success
        # contrib's AppResponse{Status `json:"status"`}: "Status" and "STATUS" are the field too.
        given = gojson.values(value, "status")
        if any(item is not None and not isinstance(item, str) for item in given):
            return Outcome.SUCCESS, ""  # a decode error in Go, which daprd treats as success
        app_status = gojson.field(value, "status") or ""
        if app_status in ("", "SUCCESS"):
            return Outcome.SUCCESS, ""
        if app_status == "DROP":
            return Outcome.DROP, app_status
        return Outcome.RETRY, app_status
    if status == 404:
        return Outcome.NOT_FOUND, ""
    return Outcome.RETRY, ""


def headers_for(pubsubname: str, message: Message, event: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers: daprd forwards the broker message metadata as HTTP headers
    (WithCustomHTTPMetadata), then sets its own."""
    headers = {
        key: value
        for key, value in message.metadata.items()
        if key.lower() not in _RESERVED_HEADERS
        and _HEADER_NAME.match(key)
        and value.isascii()
        and "\n" not in value
        and "\r" not in value
    }
    headers["pubsubName"] = pubsubname
    headers["Content-Type"] = cloudevents.CLOUDEVENT_CONTENT_TYPE
    trace = event.get("traceparent") or event.get("traceid")
    if isinstance(trace, str) and trace:
        headers["traceparent"] = trace
    state = event.get("tracestate")
    if isinstance(state, str) and state:
        headers["tracestate"] = state
    return headers


class HttpPostman:
    def __init__(self, app: AppChannel, metrics: ComponentMetrics | None = None) -> None:
        self._app = app
        self._metrics = metrics

    async def post(
        self,
        pubsubname: str,
        topic: str,
        message: Message,
        event: Mapping[str, Any],
        body: bytes,
        path: str,
    ) -> Outcome:
        event_id = event.get("id")
        headers = headers_for(pubsubname, message, event)
        started = time.perf_counter()
        try:
            status, _, reply = await self._app.request("POST", path, headers, body)
        except AppUnreachableError as exc:
            self._ingress(pubsubname, topic, "retry", "", started)
            text = f"error returned from app channel while sending pub/sub event to app: {exc}"
            logger.warning(
                "encountered a retriable error while publishing a subscribed message to topic "
                "%s, err: %s",
                topic,
                text,
            )
            raise RetriableError(text) from None
        outcome, app_status = interpret_response(status, reply)
        self._ingress(pubsubname, topic, *INGRESS[outcome], started)
        if outcome is Outcome.SUCCESS:
            return outcome
        if outcome is Outcome.DROP:
            logger.warning(
                "DROP status returned from app while processing pub/sub event %s", event_id
            )
            return outcome
        if outcome is Outcome.NOT_FOUND:
            logger.error(
                "non-retriable error returned from app while processing pub/sub event %s: %s. "
                "status code returned: %s",
                event_id,
                reply[:200].decode("utf-8", errors="replace"),
                status,
            )
            return outcome
        if app_status == "RETRY":
            text = f"RETRY status returned from app while processing pub/sub event {event_id}"
        elif app_status:
            text = (
                f"unknown status returned from app while processing pub/sub event {event_id}, "
                f"status: {app_status}"
            )
        else:
            text = (
                f"retriable error returned from app while processing pub/sub event {event_id}, "
                f"topic: {event.get('topic')}, body: "
                f"{reply[:200].decode('utf-8', errors='replace')}. status code returned: {status}"
            )
        logger.warning(
            "encountered a retriable error while publishing a subscribed message to topic %s, "
            "err: %s",
            topic,
            text,
        )
        raise RetriableError(text)

    def _ingress(
        self, pubsubname: str, topic: str, process_status: str, status: str, started: float
    ) -> None:
        """One attempt's outcome, recorded as daprd's HTTP postman records it."""
        if self._metrics is not None:
            self._metrics.pubsub_ingress(
                pubsubname, process_status, status, topic, ms_since(started)
            )
