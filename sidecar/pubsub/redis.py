"""``pubsub.redis``: Redis Streams with consumer groups, as components-contrib's redis pubsub.

One stream per topic; entries carry ``data`` and ``metadata`` (JSON) fields. Consumers of one
``consumerID`` share a group (competing); ones left pending longer than ``processingTimeout``
are reclaimed every ``redeliverInterval``, looking only at the group's first ``queueDepth``
pending messages as contrib does. Subscribing fails when the group cannot be created (Redis
down); once started, the loops survive Redis restarts and recreate a lost group.

When a message is acknowledged follows contrib 1.18 (``processMessage``; since "Make Redis
Streams PubSub honor resiliency policy"): when the handler returns, and also when it fails,
since retrying is the resiliency policy's job. Only a failure that comes after
``processingTimeout`` (with redelivery on), or from a subscription that is closing, leaves the
message pending for the reclaimer. The handler itself is never cut off: daprd delivers under a
context of its own, so a slow success is still acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from sidecar.components import Component, ComponentError
from sidecar.durations import parse_go_duration
from sidecar.pubsub.base import (
    BulkEntry,
    Consumers,
    Handler,
    Message,
    PublishError,
    SubscribeFailedError,
    SubscriptionClosedError,
)
from sidecar.pubsub.stream_acks import StreamAcks
from sidecar.redis_conn import redis_client, redis_pipe
from sidecar.redis_endpoint import RedisEndpoint
from sidecar.redis_pipe import Arg, RedisPipe, ReplyError
from sidecar.state.base import StreamAppend
from sidecar.ticker import Ticker

logger = logging.getLogger(__name__)

_BLOCK_MS = 2000  #: XREADGROUP BLOCK; bounds how long a poll waits before checking for close
_MAX_BACKOFF = 5.0  #: seconds between reconnection attempts while Redis is down
_RECLAIM_ROUNDS = 100  #: claim rounds per redeliver tick, at most


@dataclass(frozen=True, slots=True)
class StreamSettings:
    consumer_id: str
    processing_timeout: float  #: seconds; 0 disables redelivery
    redeliver_interval: float  #: seconds; 0 disables redelivery
    queue_depth: int
    concurrency: int
    max_len_approx: int | None


def _duration_ms(component: Component, key: str, default: float) -> float:
    """contrib's rule: an integer is milliseconds, anything else a Go duration string."""
    raw = component.metadata.get(key, "").strip()
    if not raw:
        return default
    if raw.isdigit():
        return int(raw) / 1000.0
    try:
        value = parse_go_duration(raw)
    except ValueError:
        raise ComponentError(
            component, key, f"expected milliseconds or a duration like 30s, got {raw!r}"
        ) from None
    if value < 0:
        raise ComponentError(component, key, f"must not be negative, got {raw!r}")
    return value


def parse_settings(component: Component, app_id: str) -> StreamSettings:
    """contrib's defaults: processingTimeout 60 s, redeliverInterval 15 s, depth 100, 10 workers."""
    queue_depth = component.get_int("queueDepth", 100)
    concurrency = component.get_int("concurrency", 10)
    max_len = component.get_int("maxLenApprox", 0)
    for key, value in (("queueDepth", queue_depth), ("concurrency", concurrency)):
        if value < 1:
            raise ComponentError(component, key, f"must be at least 1, got {value}")
    return StreamSettings(
        consumer_id=component.metadata.get("consumerID") or app_id,
        processing_timeout=_duration_ms(component, "processingTimeout", 60.0),
        redeliver_interval=_duration_ms(component, "redeliverInterval", 15.0),
        queue_depth=queue_depth,
        concurrency=concurrency,
        max_len_approx=max_len if max_len > 0 else None,
    )


def _cancelled() -> bool:
    """Whether close() cancelled this task; redis-py can swallow the CancelledError mid-command."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _pairs(fields: Sequence[bytes] | None) -> dict[bytes, bytes]:
    """A stream entry's flat field/value list (RESP2, as hiredis gives it) as a mapping."""
    if not fields:
        return {}
    return dict(zip(fields[::2], fields[1::2], strict=True))


#: XCLAIM's entries as redis-py gives them: (None, None) for one deleted from the stream.
_Claimed = list[tuple[bytes, dict[bytes, bytes]] | tuple[None, None]]


@dataclass(frozen=True, slots=True)
class _Pending:
    entry_id: bytes
    message: Message


def _decode(topic: str, fields: Mapping[bytes, bytes]) -> Message:
    metadata: dict[str, str] = {}
    raw_meta = fields.get(b"metadata")
    if raw_meta:
        try:
            parsed = json.loads(raw_meta)
            if isinstance(parsed, dict):
                metadata = {str(k): str(v) for k, v in parsed.items()}
        except ValueError:
            logger.warning("redis streams: could not extract metadata of a message on %s", topic)
    return Message(topic=topic, data=fields.get(b"data", b""), metadata=metadata)


class RedisStreamsPubSub:
    features: frozenset[str] = frozenset()

    def __init__(self, component: Component, app_id: str) -> None:
        self.name = component.name
        self.component = component
        self.settings = parse_settings(component, app_id)
        # Blocking reads and group management on redis-py; publish and ack on the pipelined
        # connection, which is cheaper per command and must never carry a blocking one.
        self._client: aioredis.Redis = redis_client(component)
        self._pipe = redis_pipe(component)
        self._acks = StreamAcks(self._pipe, self.settings.consumer_id)
        self._readers: set[RedisPipe] = set()  #: one per poll loop, for the blocking reads
        self._host = component.metadata.get("redisHost", "")
        self._consumers: set[Consumers] = set()
        self._closed = False

    async def init(self) -> None:
        try:
            async with asyncio.timeout(self.component.init_timeout):
                await self._client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise ComponentError(
                self.component,
                "redisHost",
                f"redis streams: error connecting to redis at {self._host}: {exc or 'timeout'}. "
                "Start Redis there or fix redisHost/redisPassword",
            ) from None

    async def close(self) -> None:
        self._closed = True
        for consumers in list(self._consumers):
            await consumers.stop()
        await self._acks.drain()
        await self._client.aclose()
        await self._pipe.close()
        for reader in list(self._readers):
            await reader.close()

    @property
    def endpoint(self) -> RedisEndpoint:
        return self._pipe.settings.endpoint

    def stream_append(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> StreamAppend:
        """The XADD that ``publish`` would send, for a store on the same Redis to run."""
        encoded = json.dumps(dict(metadata)).encode() if metadata else b"{}"
        fields = (b"data", data, b"metadata", encoded)
        if self.settings.max_len_approx is None:
            return StreamAppend(topic, ("*", *fields))
        return StreamAppend(topic, ("MAXLEN", "~", self.settings.max_len_approx, "*", *fields))

    def _xadd(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> tuple[Arg, ...]:
        append = self.stream_append(topic, data, metadata)
        return ("XADD", append.stream, *append.args)

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        if self._closed:
            raise PublishError("component is closed")
        try:
            await self._pipe.execute(*self._xadd(topic, data, metadata))
        except (ReplyError, OSError) as exc:
            raise PublishError(f"redis streams: error from publish: {exc}") from exc

    async def bulk_publish(self, topic: str, entries: Sequence[BulkEntry]) -> list[str]:
        if self._closed:
            return [entry.entry_id for entry in entries]
        commands = [self._xadd(topic, entry.data, entry.metadata) for entry in entries]
        try:
            results = await self._pipe.execute_many(commands)
        except OSError as exc:
            logger.error("redis streams: bulk publish to %s failed: %s", topic, exc)
            return [entry.entry_id for entry in entries]
        return [
            e.entry_id for e, r in zip(entries, results, strict=True) if isinstance(r, Exception)
        ]

    async def subscribe(self, topic: str, handler: Handler, *, concurrency: int) -> Consumers:
        """Poll, reclaim and work ``topic`` in the consumer group. Stopping the subscription
        leaves what it read and did not finish pending, for the group's reclaimers."""
        if self._closed:
            raise RuntimeError("component is closed")
        try:
            await self._ensure_group(topic)
        except (RedisError, OSError) as exc:
            # contrib's CreateConsumerGroup: logged and returned, nothing started (daprd's
            # subscriber retries the subscription).
            logger.error("redis streams: %s", exc)
            raise SubscribeFailedError(str(exc)) from None
        queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=self.settings.queue_depth)
        workers = concurrency if concurrency > 0 else self.settings.concurrency
        consumers = Consumers(self.name, lambda: self._consumers.discard(consumers))
        consumers.spawn(self._poll_loop(topic, queue), f"redis-poll-{topic}")
        consumers.spawn(self._reclaim_loop(topic, queue), f"redis-reclaim-{topic}")
        for index in range(workers):
            consumers.spawn(self._worker(topic, queue, handler), f"redis-worker-{topic}-{index}")
        self._consumers.add(consumers)
        return consumers

    async def _ensure_group(self, topic: str) -> None:
        try:
            await self._client.xgroup_create(
                topic, self.settings.consumer_id, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _poll_loop(self, topic: str, queue: asyncio.Queue[_Pending]) -> None:
        group = self.settings.consumer_id
        read: tuple[Arg, ...] = ("XREADGROUP", "GROUP", group, group)
        read += ("COUNT", self.settings.queue_depth, "BLOCK", _BLOCK_MS, "STREAMS", topic, ">")
        # Its own connection: a blocking read must not hold up the shared pipe's callers.
        reader = redis_pipe(self.component)
        self._readers.add(reader)
        delay, down = 0.1, False
        try:
            while not self._closed and not _cancelled():
                try:
                    response: Any = await reader.execute(*read)
                    if down:
                        logger.info(
                            "redis streams: reconnected to %s, consuming %s", self._host, topic
                        )
                        down, delay = False, 0.1
                    for _stream, entries in response or []:
                        for entry_id, fields in entries:
                            await queue.put(_Pending(entry_id, _decode(topic, _pairs(fields))))
                    continue
                except asyncio.CancelledError:
                    raise
                except (ResponseError, ReplyError) as exc:
                    if "NOGROUP" in str(exc):
                        logger.warning(
                            "redis streams: consumer group %s does not exist for stream %s "
                            "(Redis lost its data?); recreating it",
                            group,
                            topic,
                        )
                        with contextlib.suppress(RedisError, OSError):
                            await self._ensure_group(topic)
                        continue
                    logger.error("redis streams: error reading from stream %s: %s", topic, exc)
                except (RedisError, OSError) as exc:
                    if not down:
                        logger.warning(
                            "redis streams: lost connection to %s while reading %s: %s; "
                            "reconnecting",
                            self._host,
                            topic,
                            exc,
                        )
                    down = True
                except Exception:
                    logger.exception(
                        "redis streams: unexpected error reading from stream %s", topic
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
        finally:
            self._readers.discard(reader)
            await reader.close()

    async def _worker(self, topic: str, queue: asyncio.Queue[_Pending], handler: Handler) -> None:
        while not _cancelled():
            pending = await queue.get()
            try:
                await self._process(topic, pending, handler)
            finally:
                queue.task_done()

    async def _process(self, topic: str, pending: _Pending, handler: Handler) -> None:
        started = time.monotonic()
        try:
            await handler(pending.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            entry = pending.entry_id.decode()
            logger.error("Error processing Redis message %s: %s", entry, exc or type(exc).__name__)
            if self._keeps_pending(exc, time.monotonic() - started):
                return
        self._acks.ack(topic, pending.entry_id)

    def _keeps_pending(self, exc: Exception, elapsed: float) -> bool:
        """Whether a failed message stays pending: contrib's ``ctx.Err() != nil``, its
        handler context being bounded by processingTimeout (when redelivery is on) and ended
        by the subscription closing."""
        if self._closed or isinstance(exc, SubscriptionClosedError):
            return True
        settings = self.settings
        bounded = settings.processing_timeout and settings.redeliver_interval
        return bool(bounded) and elapsed >= settings.processing_timeout

    async def _reclaim_loop(self, topic: str, queue: asyncio.Queue[_Pending]) -> None:
        """contrib's ``reclaimPendingMessagesLoop``: a round at once, then one per tick of a
        ``redeliverInterval`` ticker (a schedule that rounds do not shift, as Go's)."""
        settings = self.settings
        if not settings.processing_timeout or not settings.redeliver_interval:
            return
        await self._reclaim_round(topic, queue)
        ticker = Ticker(settings.redeliver_interval)
        while not self._closed and not _cancelled():
            await ticker.wait()
            await self._reclaim_round(topic, queue)

    async def _reclaim_round(self, topic: str, queue: asyncio.Queue[_Pending]) -> None:
        try:
            await self._reclaim(topic, queue)
        except asyncio.CancelledError:
            raise
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):  # the poll loop recreates a lost group
                logger.error("error reclaiming pending Redis messages on %s: %s", topic, exc)
        except (RedisError, OSError) as exc:
            logger.debug("redis streams: reclaim on %s skipped, Redis unavailable: %s", topic, exc)
        except Exception:
            logger.exception("redis streams: unexpected error reclaiming on %s", topic)

    async def _reclaim(self, topic: str, queue: asyncio.Queue[_Pending]) -> None:
        """Hand out again the messages idle for processingTimeout, as contrib's
        ``reclaimPendingMessages``: look at the group's first ``queueDepth`` pending messages
        (oldest first), claim the ones idle that long and queue them; again, until none of the
        first ``queueDepth`` is due. A message behind ``queueDepth`` older pending ones is so
        not handed out again until enough of those are acknowledged, as under daprd. Claimed
        messages that the stream no longer holds are acknowledged."""
        settings = self.settings
        group = settings.consumer_id
        idle_ms = int(settings.processing_timeout * 1000)
        client: Any = self._client  # redis-py's stream replies are typed looser than they are
        for _ in range(_RECLAIM_ROUNDS):
            pending: list[dict[str, Any]] = await client.xpending_range(
                topic, group, min="-", max="+", count=settings.queue_depth
            )
            due: list[bytes] = [
                p["message_id"] for p in pending if p["time_since_delivered"] >= idle_ms
            ]
            if not due:
                return
            claimed: _Claimed = await client.xclaim(
                topic, group, group, min_idle_time=idle_ms, message_ids=due
            )
            for entry_id, fields in claimed:
                if entry_id is not None and fields is not None:
                    await queue.put(_Pending(entry_id, _decode(topic, fields)))
            if any(entry_id is None for entry_id, _ in claimed):
                await self._drop_deleted(topic, set(due) - {e for e, _ in claimed})

    async def _drop_deleted(self, topic: str, entry_ids: set[bytes]) -> None:
        """contrib's ``removeMessagesThatNoLongerExistFromPending``: acknowledge each pending
        message that a claim of its own finds deleted from the stream (trimmed)."""
        group = self.settings.consumer_id
        client: Any = self._client
        for entry_id in entry_ids:
            claimed: _Claimed = await client.xclaim(
                topic, group, group, min_idle_time=0, message_ids=[entry_id]
            )
            if any(found is None for found, _ in claimed):
                await client.xack(topic, group, entry_id)
