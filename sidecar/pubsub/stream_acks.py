"""Acknowledgements of Redis stream entries, coalesced per stream and event-loop tick.

contrib sends one XACK per message. The ids acknowledged in one tick of the sidecar's loop (under
load, most of a read's batch) go out here as one XACK, which is the same for every client and
far fewer commands for Redis and for the sidecar.
"""

from __future__ import annotations

import asyncio
import logging

from sidecar.redis_pipe import RedisPipe, ReplyError

logger = logging.getLogger(__name__)


class StreamAcks:
    """XACKs of one consumer group, sent in the background; ``drain`` before closing."""

    def __init__(self, pipe: RedisPipe, group: str) -> None:
        self._pipe = pipe
        self._group = group
        self._pending: dict[str, list[bytes]] = {}  #: stream -> ids not sent yet
        self._sending: set[asyncio.Task[None]] = set()

    def ack(self, stream: str, entry_id: bytes) -> None:
        """Acknowledge ``entry_id`` with the others of this tick."""
        ids = self._pending.get(stream)
        if ids is None:
            ids = self._pending[stream] = []
            asyncio.get_running_loop().call_soon(self._flush, stream)
        ids.append(entry_id)

    def _flush(self, stream: str) -> None:
        ids = self._pending.pop(stream, None)
        if not ids:
            return
        task = asyncio.create_task(self._send(stream, ids), name=f"xack-{stream}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, stream: str, ids: list[bytes]) -> None:
        try:
            await self._pipe.execute("XACK", stream, self._group, *ids)
        except (ReplyError, OSError) as exc:
            # Left pending: the reclaimer redelivers them after processingTimeout.
            shown = ", ".join(i.decode() for i in ids[:3]) + (", ..." if len(ids) > 3 else "")
            logger.error("Error acknowledging Redis messages %s: %s", shown, exc)

    async def drain(self) -> None:
        """Send what is pending and wait for every XACK in flight."""
        for stream in list(self._pending):
            self._flush(stream)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
