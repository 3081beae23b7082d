"""Whether to send a job change while the state store is down: a few trials, not every write.

Each job change is an outbox transaction, and daprd publishes its internal message before it
asks the store to commit (pkg/api/grpc/grpc.go, ExecuteStateTransaction), outside any resiliency
policy. So every change refused by a store that is down still leaves a message the outbox relay
looks up for about 10 s, holding one of its workers: a minute's outage under a steady stream of
submissions leaves thousands, and the events of every job after the outage wait behind them.
Once the store has failed for ``confirm_after`` seconds with nothing answered in between, only
one change per ``trial_every`` seconds is sent (its failure tells the caller the same 503); the
first call that succeeds closes the breaker. Pure: time comes in as an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Seconds of failures, nothing answered between, before changes are held back.
CONFIRM_AFTER_SECONDS = 1.0
#: While held back, one change is sent this often to learn whether the store is back.
TRIAL_EVERY_SECONDS = 0.5


@dataclass(slots=True)
class Breaker:
    """Failures and answers of the store, as its calls end; ``allows`` each job change."""

    confirm_after: float = CONFIRM_AFTER_SECONDS
    trial_every: float = TRIAL_EVERY_SECONDS
    #: When the failures began (None: the last call that ended was answered).
    failing_since: float | None = None
    _last_failure: float = -math.inf
    _last_trial: float = -math.inf
    refused: int = 0  #: changes not sent because the store was failing

    def failed(self, now: float) -> None:
        if self.failing_since is None:
            self.failing_since = now
        self._last_failure = now

    def answered(self) -> None:
        self.failing_since = None

    def allows(self, now: float) -> bool:
        """Whether to send a change now (one in ``trial_every`` seconds while open).

        Open only while the failures go on: after ``confirm_after`` seconds without one (a
        replica idle since), changes go through again until the next failure comes back.
        """
        since = self.failing_since
        if (
            since is None
            or now - since < self.confirm_after
            or now - self._last_failure >= self.confirm_after
        ):
            return True
        if now - self._last_trial >= self.trial_every:
            self._last_trial = now
            return True
        self.refused += 1
        return False
