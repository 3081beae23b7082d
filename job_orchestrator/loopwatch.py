"""Says when the event loop was held up: an async handler doing blocking work (``time.sleep``,
a blocking client) stops every request, job and lease renewal of its replica meanwhile, and a
hold-up past the lease gets its jobs taken over and run again elsewhere."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: How often the loop is looked at, and how late a look may be before it is reported.
CHECK_SECONDS = 0.5
HELD_UP_SECONDS = 1.0


async def watch(
    running: Callable[[], list[str]], clock: Callable[[], float] = time.monotonic
) -> None:
    """Log a warning, naming the jobs running here, each time the loop was held up."""
    while True:
        started = clock()
        await asyncio.sleep(CHECK_SECONDS)
        late = clock() - started - CHECK_SECONDS
        if late >= HELD_UP_SECONDS:
            logger.warning(
                "the event loop was held up for %.1f s (jobs running here: %s); an async "
                "handler must not block: make it a plain def (it runs in a thread) or await "
                "asyncio.to_thread(...) for the blocking part",
                late,
                ", ".join(running()) or "none",
            )
