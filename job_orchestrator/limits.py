"""Caps that keep one client from exhausting a replica: waiting requests and job input size."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from job_orchestrator.errors import InputTooLarge, TooManyWaiters


class WaiterSlots:
    """A count of the requests waiting on this replica (long polls, waits, event streams)."""

    __slots__ = ("capacity", "in_use")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0

    @property
    def full(self) -> bool:
        return self.in_use >= self.capacity

    @contextmanager
    def hold(self) -> Iterator[None]:
        """One slot for the duration of a wait; TooManyWaiters (503) when none is free."""
        if self.full:
            raise TooManyWaiters(
                f"this replica already holds {self.capacity} waiting requests; retry later "
                "or ask without waiting"
            )
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1


def check_input_size(job_input: dict[str, Any], max_bytes: int) -> None:
    """InputTooLarge when ``job_input`` serialized as compact JSON is over ``max_bytes``."""
    size = len(json.dumps(job_input, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise InputTooLarge(f"the job input is {size} bytes of JSON; the limit is {max_bytes}")
