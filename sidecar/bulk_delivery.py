"""Bulk subscribe (alpha) for HTTP apps: a subscription's messages posted to the app in batches.

Per batch it follows daprd's ``pkg/runtime/subscription/bulksubscription.go`` (route each entry,
one request per path), ``bulkresiliency.go`` (retry only the failed entries) and the HTTP
postman's ``DeliverBulk`` (per-entry statuses). A message is acknowledged only after SUCCESS,
DROP or a dead letter, as on the single-message path, whose dead-letter logic it reuses.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from sidecar import cloudevents, json_reader
from sidecar.app_channel import AppChannel, AppUnreachableError
from sidecar.breaker import BreakerError
from sidecar.bulk_batcher import Batcher, Held
from sidecar.bulk_envelope import CONTENT_TYPE, AppBulkResponseError, envelope, parse_bulk_response
from sidecar.go_marshal import as_float64, go_string, marshal
from sidecar.pubsub.base import Message
from sidecar.routing import RuleEvaluationError

if TYPE_CHECKING:
    from sidecar.delivery import Route

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES = 100  #: daprd's defaultMaxMessagesCount
DEFAULT_MAX_AWAIT_MS = 1000  #: daprd's defaultMaxAwaitDurationMs
_RAW_CONTENT_TYPE = "application/octet-stream"

#: Publish a message to the subscription's dead letter topic; True when the broker took it.
DeadLetter = Callable[["Route", Message], Awaitable[bool]]
#: Dead-letter a failed message or raise so that the broker keeps it (Deliverer._fail).
Fail = Callable[["Route", Message, Exception], Awaitable[None]]


class BulkEntryError(Exception):
    """Why one entry of a batch failed; it is retried, dead-lettered or left for redelivery."""


@dataclass(slots=True, eq=False)
class _Entry:
    held: Held
    entry_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    event: Any = None  #: what the app receives as ``event`` (a CloudEvent as Go writes it)
    cloud_event: Mapping[str, Any] | None = None  #: None for rawPayload (no trace context)
    content_type: str = ""
    error: Exception | None = None  #: the failure of the last attempt; None = success or drop

    @property
    def message(self) -> Message:
        return self.held.message

    def item(self) -> dict[str, Any]:
        # Field order of daprd's BulkSubscribeMessageItem.
        return {
            "entryId": self.entry_id,
            "event": self.event,
            "metadata": dict(sorted(self.message.metadata.items())),  # a Go map
            "contentType": self.content_type,
        }


class BulkSubscriber:
    """The bulk handler of one subscription, fed by its batcher."""

    def __init__(
        self,
        route: Route,
        app: AppChannel,
        *,
        max_messages: int,
        max_await_ms: int,
        dead_letter: DeadLetter,
        fail: Fail,
    ) -> None:
        self._route = route
        self._app = app
        self._dead_letter = dead_letter
        self._fail = fail
        # daprd's GetIntValOrDefault: a value not above zero means the default.
        self._batcher = Batcher(
            f"bulk-{route.pubsubname}-{route.topic}",
            max_messages if max_messages > 0 else DEFAULT_MAX_MESSAGES,
            (max_await_ms if max_await_ms > 0 else DEFAULT_MAX_AWAIT_MS) / 1000,
            self._handle,
        )

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    async def deliver(self, message: Message) -> None:
        """The component's handler: returns once acknowledged, raises to leave it pending."""
        await self._batcher.submit(message)

    async def _handle(self, batch: list[Held]) -> None:
        """Route each entry, post one request per path, then settle every entry."""
        entries = [_Entry(held) for held in batch]
        by_path: dict[str, list[_Entry]] = {}
        if self._route.metadata_error:
            # daprd fails (or dead-letters) the whole batch when rawPayload is unreadable.
            logger.error("error deserializing pubsub metadata: %s", self._route.metadata_error)
            for entry in entries:
                entry.error = BulkEntryError(self._route.metadata_error)
        else:
            for entry in entries:
                path = await self._prepare(entry)
                if path is not None:
                    by_path.setdefault(path, []).append(entry)
        for path, routed in by_path.items():
            await self._deliver(path, routed)
        for entry in entries:
            if entry.held.abandoned or entry.error is None:
                entry.held.settle()
                continue
            try:
                await self._fail(self._route, entry.message, entry.error)
            except Exception as exc:
                entry.held.settle(exc)
            else:
                entry.held.settle()

    async def _prepare(self, entry: _Entry) -> str | None:
        """The entry's path, or None when it is settled already (error, expired, no route)."""
        route = self._route
        data = entry.message.data
        if route.raw_payload:
            entry.event = base64.b64encode(data).decode("ascii")
            entry.content_type = _RAW_CONTENT_TYPE
            match: Mapping[str, Any] | str = go_string(data)
        else:
            try:
                event = json_reader.read_delivered(data)
            except ValueError as exc:
                event, problem = None, str(exc)
            else:
                problem = "not a JSON object"
            if not isinstance(event, dict):
                logger.error(
                    "error deserializing one of the messages in bulk cloud event in pubsub %s "
                    "and topic %s: %s",
                    route.pubsubname,
                    route.topic,
                    problem,
                )
                entry.error = BulkEntryError(f"error deserializing cloud event: {problem}")
                return None
            if cloudevents.has_expired(event):
                logger.warning(
                    "dropping expired pub/sub event %s as of %s",
                    event.get("id"),
                    event.get("expiration"),
                )
                await self._drop_to_dead_letter(entry)
                return None
            entry.cloud_event = event
            # daprd posts the map its json.Unmarshal made: numbers are float64s again.
            entry.event = orjson.Fragment(marshal(json_reader.loads(data, as_float64)))
            entry.content_type = cloudevents.CLOUDEVENT_CONTENT_TYPE
            match = event
        try:
            path = route.router.route(match)
        except RuleEvaluationError as exc:
            logger.error(
                "Error finding matching route for event in bulk subscribe %s and topic %s for "
                "entry id %s: %s",
                route.pubsubname,
                route.topic,
                entry.entry_id,
                exc,
            )
            entry.error = exc
            return None
        if path is None:
            logger.warning(
                "No matching route for event in pubsub %s and topic %s; skipping",
                route.pubsubname,
                route.topic,
            )
            await self._drop_to_dead_letter(entry)
        return path

    async def _drop_to_dead_letter(self, entry: _Entry) -> None:
        # daprd copies an expired or unroutable entry to the dead letter topic and
        # acknowledges it whether or not that publish worked, as the single-message path does.
        if self._route.dead_letter_topic:
            await self._dead_letter(self._route, entry.message)

    async def _deliver(self, path: str, entries: list[_Entry]) -> None:
        """Attempts under the inbound resiliency policy, each retrying only failed entries and
        counted by the component's circuit breaker (any failed entry fails the attempt)."""
        policy = self._route.policy
        envelope_id = str(uuid.uuid4())  # daprd reuses the envelope (and its id) on retries
        started = time.monotonic()
        retry = 0
        pending = entries
        breaker = self._route.breaker
        while True:
            try:
                token = breaker.before() if breaker is not None else 0
            except BreakerError as exc:
                # An open circuit breaker fails what is left, for good (daprd's Permanent).
                self._fail_all(pending, str(exc))
                return
            try:
                async with asyncio.timeout(policy.timeout):
                    await self._attempt(path, pending, envelope_id)
            except TimeoutError:
                for entry in pending:
                    entry.error = BulkEntryError(f"timeout delivering bulk pub/sub event to {path}")
            pending = [entry for entry in pending if entry.error is not None]
            if breaker is not None:
                breaker.after(token, not pending)
            if not pending or policy.retry is None:
                return
            delay = policy.retry.delay(retry, time.monotonic() - started)
            if delay is None:
                return
            await asyncio.sleep(delay)
            retry += 1

    async def _attempt(self, path: str, entries: list[_Entry], envelope_id: str) -> None:
        """One POST of ``entries``; sets each entry's ``error`` from the app's answer."""
        route = self._route
        for entry in entries:
            entry.error = None
        body = envelope(envelope_id, route.pubsubname, route.topic, [e.item() for e in entries])
        try:
            status, _, reply = await self._app.request("POST", path, self._headers(entries), body)
        except AppUnreachableError as exc:
            text = f"error from app channel while sending pub/sub event to app: {exc}"
            logger.warning(
                "encountered a retriable error while publishing a subscribed message to topic "
                "%s, err: %s",
                route.topic,
                text,
            )
            self._fail_all(entries, text)
            return
        if status == 404:
            # Not retriable: every entry is acknowledged and none is dead-lettered.
            logger.error(
                "non-retriable error returned from app while processing bulk pub/sub event. "
                "status code returned: %s",
                status,
            )
            return
        if not 200 <= status <= 299:
            text = (
                "retriable error returned from app while processing bulk pub/sub event, "
                f"topic: {route.topic}. status code returned: {status}"
            )
            logger.warning("%s", text)
            self._fail_all(entries, text)
            return
        try:
            statuses = parse_bulk_response(reply)
        except AppBulkResponseError as exc:
            self._fail_all(entries, f"failed unmarshalling app response for bulk subscribe: {exc}")
            return
        await self._apply_statuses(entries, statuses)

    async def _apply_statuses(self, entries: list[_Entry], statuses: list[tuple[str, str]]) -> None:
        by_id = {entry.entry_id: entry for entry in entries}
        answered: set[str] = set()
        for entry_id, app_status in statuses:
            entry = by_id.get(entry_id)
            if entry is None:
                logger.warning(
                    "invalid entry id received from app while processing pub/sub event %s",
                    entry_id,
                )
                continue
            answered.add(entry_id)
            entry.error = None
            if app_status == "SUCCESS":
                continue
            if app_status == "DROP":
                logger.warning(
                    "DROP status returned from app while processing pub/sub event %s", entry_id
                )
                # daprd's bulk path ignores a failed dead-letter publish here; like the
                # single-message path we retry instead, so a dropped event is never lost.
                if self._route.dead_letter_topic and not await self._dead_letter(
                    self._route, entry.message
                ):
                    entry.error = BulkEntryError("failed to send dropped message to dead letter")
            elif app_status in ("", "RETRY"):
                entry.error = BulkEntryError(
                    f"RETRY required while processing bulk subscribe event for entry id: {entry_id}"
                )
            else:
                entry.error = BulkEntryError(
                    "unknown status returned from app while processing bulk subscribe event "
                    f"{entry_id}: {app_status}"
                )
        for entry in entries:
            if entry.entry_id not in answered:
                entry.error = BulkEntryError(
                    "response not received, RETRY required while processing bulk subscribe "
                    f"event for entry id: {entry.entry_id}"
                )

    @staticmethod
    def _fail_all(entries: list[_Entry], text: str) -> None:
        for entry in entries:
            entry.error = BulkEntryError(text)

    def _headers(self, entries: list[_Entry]) -> dict[str, str]:
        headers = {"Content-Type": CONTENT_TYPE, "pubsubName": self._route.pubsubname}
        # daprd starts a span per entry and the request carries the last one's context.
        for entry in entries:
            event = entry.cloud_event or {}
            trace = event.get("traceparent") or event.get("traceid")
            if isinstance(trace, str) and trace:
                headers["traceparent"] = trace
                state = event.get("tracestate")
                if isinstance(state, str) and state:
                    headers["tracestate"] = state
                else:
                    headers.pop("tracestate", None)
        return headers
