"""The app's subscriptions at their components, started and stopped as daprd's subscriber does
(pkg/runtime/processor/subscriber): one that cannot start (the component's Subscribe fails, or
the topic is scoped out) is logged and retried in the background until it starts, the app turns
unhealthy or the sidecar stops (``retrySubscription``); readiness does not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.pubsub.base import Consumers, Handler, PubSub, SubscribeFailedError
from sidecar.pubsub.scopes import UNSCOPED, TopicScopes
from sidecar.resiliency import RetryPolicy

logger = logging.getLogger(__name__)

#: The backoff of daprd's retrySubscription: cenkalti/backoff's exponential defaults (500 ms,
#: +-50 %, x1.5, at most 60 s apart) with no time limit.
RETRY_BACKOFF = RetryPolicy(policy="exponential", max_elapsed=0.0)


class StartFailedError(Exception):
    """A subscription did not start; the message is daprd's subscription.New error."""


@dataclass(frozen=True, slots=True)
class AppTopic:
    """One of the app's subscriptions as the component gets it."""

    pubsubname: str
    topic: str
    handler: Handler
    concurrency: int
    bulk: bool = False


class AppConsumers:
    """StartAppSubscriptions / StopAppSubscriptions over the app's subscriptions."""

    def __init__(
        self,
        pubsubs: Mapping[str, PubSub],
        scopes: Mapping[str, TopicScopes],
        backoff: RetryPolicy = RETRY_BACKOFF,
    ) -> None:
        self._pubsubs = pubsubs
        self._scopes = scopes
        self._backoff = backoff
        self.topics: list[AppTopic] = []
        self.active = False  #: daprd's appSubActive: started, or retrying, at the components
        self._consumers: list[Consumers] = []
        self._retries: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Subscribe every topic; each failure is logged and retried in the background."""
        self.active = True
        failures: list[str] = []
        for topic in self.topics:
            try:
                self._consumers.append(await self._subscribe(topic))
                logger.info(
                    "subscribed to topic %s on pubsub %s%s",
                    topic.topic,
                    topic.pubsubname,
                    " (bulk)" if topic.bulk else "",
                )
            except StartFailedError as exc:
                failures.append(str(exc))
                logger.error(
                    "Failed to start subscription for pubsub %s, topic %s: %s",
                    topic.pubsubname,
                    topic.topic,
                    exc,
                )
                task = asyncio.create_task(self._retry(topic), name=f"retry-{topic.topic}")
                self._retries.add(task)
                task.add_done_callback(self._retries.discard)
        if failures:
            # daprd's appHealthChanged, on StartAppSubscriptions' joined errors.
            logger.warning("failed to subscribe to topics: %s ", "\n".join(failures))

    async def stop(self) -> None:
        """Stop the retries and every started subscription (what it had not finished stays
        unacknowledged, for the broker to hand out again)."""
        self.active = False
        await self.cancel_retries()
        stopping, self._consumers = self._consumers, []
        for consumers in stopping:
            await consumers.stop()

    async def cancel_retries(self) -> None:
        for task in list(self._retries):
            task.cancel()
        # gather, not suppress(CancelledError): a cancellation of this task must go on.
        await asyncio.gather(*self._retries, return_exceptions=True)

    async def _subscribe(self, topic: AppTopic) -> Consumers:
        if not self._scopes.get(topic.pubsubname, UNSCOPED).may_subscribe(topic.topic):
            raise StartFailedError(
                f"subscription to topic '{topic.topic}' on pubsub '{topic.pubsubname}' "
                "is not allowed"
            )
        try:
            return await self._pubsubs[topic.pubsubname].subscribe(
                topic.topic, topic.handler, concurrency=topic.concurrency
            )
        except SubscribeFailedError as exc:
            raise StartFailedError(f"failed to subscribe to topic {topic.topic}: {exc}") from None

    async def _retry(self, topic: AppTopic) -> None:
        attempt = 0
        while True:
            try:
                consumers = await self._subscribe(topic)
            except StartFailedError as exc:
                logger.error(
                    "Retry failed for subscription pubsub %s, topic %s: %s. Will retry.",
                    topic.pubsubname,
                    topic.topic,
                    exc,
                )
                await asyncio.sleep(self._backoff.delay(attempt, 0.0) or 0.0)
                attempt = min(attempt + 1, 64)  # the interval is long capped by then
                continue
            if not self.active:
                await consumers.stop()
                return
            self._consumers.append(consumers)
            logger.info(
                "Successfully started subscription after retry for pubsub %s, topic %s",
                topic.pubsubname,
                topic.topic,
            )
            return
