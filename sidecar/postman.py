"""What a subscription hands a message to: a postman, as daprd's ``subscription/postman``.

The HTTP postman posts to the app (``sidecar.postman_http``); the streaming one sends on a
``SubscribeTopicEventsAlpha1`` stream (``sidecar.postman_stream``). Both make one attempt and
tell the deliverer how it went; retries, dead letters and acknowledgement are the deliverer's.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol

from sidecar.pubsub.base import Message


class Outcome(enum.Enum):
    SUCCESS = "success"  #: acknowledged
    RETRY = "retry"  #: retried per resiliency policy, then dead-lettered or redelivered
    DROP = "drop"  #: acknowledged; dead-lettered when the subscription has a dead letter topic
    NOT_FOUND = "not_found"  #: HTTP 404: a drop too (daprd's ErrMessageDropped), logged apart


#: daprd's ingress metric labels (process_status, status) per outcome: an app's DROP is a drop
#: with status success, a 404 a plain drop.
INGRESS = {
    Outcome.SUCCESS: ("success", ""),
    Outcome.RETRY: ("retry", ""),
    Outcome.DROP: ("drop", "success"),
    Outcome.NOT_FOUND: ("drop", ""),
}


class RetriableError(Exception):
    """The attempt failed in a way the resiliency policy retries (daprd's NewRetriable)."""


class Postman(Protocol):
    async def post(
        self,
        pubsubname: str,
        topic: str,
        message: Message,
        event: Mapping[str, Any],
        body: bytes,
        path: str,
    ) -> Outcome:
        """One attempt to hand the event over; RetriableError when it should be retried."""


class StreamPostman(Postman, Protocol):
    def close(self, reason: str) -> None:
        """End the stream from the sidecar's side (its client gets ``reason``)."""
