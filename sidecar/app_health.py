"""App health checks (``--enable-app-health-check``), as daprd runs them.

The sidecar probes ``GET <app-health-check-path>`` every ``interval``; a 2xx within ``timeout``
is a success. The app starts unhealthy, becomes healthy at its first success, and unhealthy
again after ``threshold`` failures in a row. While unhealthy, subscriptions deliver nothing and
service invocation of the app answers ERR_DIRECT_INVOKE "app is not in a healthy state".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sidecar.app_channel import AppChannel, AppUnreachableError

logger = logging.getLogger(__name__)

UNHEALTHY_MESSAGE = "app is not in a healthy state"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str
    interval: float = 5.0  #: seconds between probes (``--app-health-probe-interval``)
    timeout: float = 0.5  #: seconds a probe may take (``--app-health-probe-timeout``, in ms)
    threshold: int = 3  #: failures in a row that make the app unhealthy


class HealthState:
    """Healthy or not, from probe outcomes; pure, so the rules read and test on their own."""

    def __init__(self, threshold: int) -> None:
        self._threshold = threshold
        self._failures = 0
        self.healthy = False

    def record(self, success: bool) -> bool | None:
        """Note one probe's outcome; the new state when it changed, else None."""
        if success:
            self._failures = 0
            if not self.healthy:
                self.healthy = True
                return True
            return None
        self._failures += 1
        if self.healthy and self._failures >= self._threshold:
            self.healthy = False
            return False
        return None


class AppHealth:
    """Probes the app forever; ``on_change(healthy)`` runs at each change of state."""

    def __init__(
        self,
        channel: AppChannel,
        check: HealthCheck,
        on_change: Callable[[bool], None],
    ) -> None:
        self._channel = channel
        self._check = check
        self._on_change = on_change
        self._state = HealthState(check.threshold)
        #: Set once probes found the app unhealthy, until it is healthy again; not before the
        #: first report (a blocked shutdown waits for a report, as daprd's does).
        self.unhealthy = asyncio.Event()

    async def probe(self) -> bool:
        try:
            async with asyncio.timeout(self._check.timeout):
                status, _, _ = await self._channel.send("GET", self._check.path, {}, b"")
        except (AppUnreachableError, TimeoutError):
            return False
        return 200 <= status < 300

    async def run(self) -> None:
        while True:
            change = self._state.record(await self.probe())
            if change is not None:
                logger.info("app is %s", "healthy" if change else "unhealthy")
                if change:
                    self.unhealthy.clear()
                else:
                    self.unhealthy.set()
                self._on_change(change)
            await asyncio.sleep(self._check.interval)
