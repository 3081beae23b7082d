"""The app's subscriptions, started and stopped as daprd's subscriber does it
(pkg/runtime/processor/subscriber): ``GET /dapr/subscribe`` is asked once, under daprd's built-in
initialization retries, and when it fails none of the app's subscriptions start that time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from sidecar import app_subscriptions
from sidecar.app_channel import AppChannel, AppResponse, AppUnreachableError
from sidecar.app_health import UNHEALTHY_MESSAGE
from sidecar.components import Subscription
from sidecar.delivery import Deliverer
from sidecar.policy_runner import run
from sidecar.resiliency import INITIALIZATION_RETRIES, Resiliency
from sidecar.routing import RuleCompileError, check_rules

logger = logging.getLogger(__name__)


#: The gRPC status error daprd's app channel returns for an unhealthy app, as Go prints it.
_UNHEALTHY = f"rpc error: code = Internal desc = {UNHEALTHY_MESSAGE}"


class ProgrammaticError(Exception):
    """The app's subscriptions cannot be read; daprd then starts none of the app's."""


async def read_app_subscriptions(
    channel: AppChannel,
    app_id: str,
    resiliency: Resiliency,
    healthy: Callable[[], bool] = lambda: True,
) -> list[Subscription]:
    """daprd's GetSubscriptionsHTTP (pkg/runtime/pubsub/subscriptions.go). No answer once the
    retries ran out, a 200 that does not decode or a rule that is not CEL: ProgrammaticError.
    404, or any other status (logged), is no subscriptions. An attempt while ``healthy()`` is
    false fails without calling the app, and the retries go on (daprd's HTTP app channel
    refuses its own calls to an unhealthy app: http_channel.go, InvokeMethod)."""
    headers = {"dapr-app-id": app_id, "content-type": "application/json"}

    async def ask() -> AppResponse:
        if not healthy():
            raise AppUnreachableError(_UNHEALTHY)
        return await channel.request("GET", "/dapr/subscribe", headers, b"")

    policy = resiliency.built_in(INITIALIZATION_RETRIES)
    try:
        status, _, body = await run(
            policy, None, ask, AppUnreachableError, name=INITIALIZATION_RETRIES
        )
    except AppUnreachableError as exc:
        raise ProgrammaticError(str(exc)) from None
    if status == 404:
        logger.debug("user app did not subscribe to any topic")
        return []
    if status != 200:
        logger.error("app returned http status code %s from subscription endpoint", status)
        return []
    if not body.strip():
        return []  # Go's decoder meets EOF at once: no subscriptions
    try:
        subscriptions = app_subscriptions.read(body)
    except app_subscriptions.SubscribeAnswerError as exc:
        message = f"error getting topics from app: {exc}"
        logger.error("%s", message)
        raise ProgrammaticError(message) from None
    try:
        check_rules(subscriptions)
    except RuleCompileError as exc:
        raise ProgrammaticError(str(exc)) from None
    return subscriptions


class AppSubscriber:
    """StartAppSubscriptions and StopAppSubscriptions: at start-up, or, with app health checks,
    each time the app turns healthy or unhealthy (one change at a time, in order).

    The first start asks the app for its subscriptions (only when a pubsub is loaded). If that
    fails, daprd logs it and starts nothing, declarative subscriptions included; it never asks
    again, so the next start (the app healthy again after being unhealthy) starts the
    declarative ones alone.
    """

    def __init__(
        self,
        declarative: Sequence[Subscription],
        deliverer: Deliverer,
        channel: AppChannel,
        app_id: str,
        resiliency: Resiliency,
        *,
        has_pubsubs: bool,
        on_error: Callable[[Exception], None],
        healthy: Callable[[], bool] = lambda: True,
    ) -> None:
        #: What the metadata API lists (daprd's component store): the declarative ones, and
        #: once the app answered, its own in their place.
        self.subscriptions = list(declarative)
        self._declarative = tuple(declarative)
        self._deliverer = deliverer
        self._channel = channel
        self._app_id = app_id
        self._resiliency = resiliency
        self._has_pubsubs = has_pubsubs
        self._on_error = on_error  #: the deliverer could not start them
        self._healthy = healthy  #: the app's health now (always true without health checks)
        self._asked = False  #: daprd's hasInitProg: the app is asked once, whatever it answered
        self._active = False  #: daprd's appSubActive
        self._started = False  #: the deliverer has them (later starts resume it)
        self._lock = asyncio.Lock()
        self._changes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        async with self._lock:
            await self._start()

    def health_changed(self, healthy: bool) -> None:
        """The app's health changed: start or stop its subscriptions, after earlier changes."""
        task = asyncio.create_task(self._change(healthy), name="app-subscriptions")
        self._changes.add(task)
        task.add_done_callback(self._changes.discard)

    async def close(self) -> None:
        for task in list(self._changes):
            task.cancel()
        await asyncio.gather(*self._changes, return_exceptions=True)

    async def _change(self, healthy: bool) -> None:
        async with self._lock:
            if healthy:
                await self._start()
            elif self._active:
                self._active = False
                self._deliverer.pause()

    async def _start(self) -> None:
        if self._active:
            return
        if not self._asked and self._has_pubsubs:
            self._asked = True
            try:
                programmatic = await read_app_subscriptions(
                    self._channel, self._app_id, self._resiliency, self._healthy
                )
            except ProgrammaticError as exc:
                # daprd's appHealthChanged (pkg/runtime/runtime.go) warns and runs on.
                logger.warning("failed to subscribe to topics: %s ", exc)
                return
            _log_topics(programmatic)
            self.subscriptions = app_subscriptions.in_effect(self._declarative, programmatic)
        self._active = True
        if self._started:
            self._deliverer.resume()
            return
        self._started = True
        try:
            await self._deliverer.start(self.subscriptions)
        except Exception as exc:
            self._on_error(exc)


def _log_topics(subscriptions: Sequence[Subscription]) -> None:
    topics: dict[str, list[str]] = {}
    for sub in subscriptions:
        topics.setdefault(sub.pubsubname, []).append(sub.topic)
    for pubsub, names in topics.items():
        # Go's "[%s]" of a []string: the list's own brackets inside.
        logger.info(
            "app is subscribed to the following topics: [[%s]] through pubsub=%s",
            " ".join(names),
            pubsub,
        )
