"""Meters read around a measured phase: CPU per process group, memory, Redis command counts."""

from __future__ import annotations

import time
from collections.abc import Mapping

import redis

from .procs import cpu_seconds, rss_bytes

#: Commands the pub/sub machinery runs on its own (stream reads, acks, redelivery scans) and
#: housekeeping; everything else a sidecar sends is a state-store command.
NON_STATE_COMMANDS = frozenset(
    {
        "xreadgroup", "xread", "xack", "xadd", "xautoclaim", "xclaim", "xpending", "xgroup",
        "xinfo", "xtrim", "xlen", "ping", "info", "client", "select", "hello", "command",
        "config", "auth", "publish", "subscribe", "unsubscribe", "psubscribe",
    }
)  # fmt: skip


#: Commands that only read state; the rest of the state commands write (or compare-and-set).
READ_COMMANDS = frozenset(
    {"get", "mget", "hget", "hmget", "hgetall", "exists", "hexists", "hlen", "strlen", "scan",
     "hscan", "keys", "ttl", "pttl", "type"}
)  # fmt: skip


def reads_and_writes(commands: Mapping[str, int]) -> tuple[int, int]:
    """Split state-store command counts into (reads, writes)."""
    reads = sum(n for name, n in commands.items() if name.split("|", 1)[0] in READ_COMMANDS)
    return reads, sum(commands.values()) - reads


class CpuMeter:
    """CPU seconds of labelled process groups over a phase: start(), then stop()."""

    def __init__(self, groups: Mapping[str, int]) -> None:
        self.groups = dict(groups)
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._start = {label: cpu_seconds(pgid) for label, pgid in self.groups.items()}

    def stop(self) -> dict[str, float]:
        return {
            label: cpu_seconds(pgid) - self._start[label] for label, pgid in self.groups.items()
        }


def rss_mb(pgid: int) -> float:
    return rss_bytes(pgid) / 1024 / 1024


def redis_commands(port: int) -> dict[str, int]:
    """Calls per command since the server started (INFO commandstats)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_").lower(): int(values["calls"])
        for name, values in stats.items()
    }


def state_commands(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The state-store commands run between two commandstats snapshots, by command."""
    diff = {}
    for name, calls in after.items():
        base = name.split("|", 1)[0]
        if base in NON_STATE_COMMANDS:
            continue
        delta = calls - before.get(name, 0)
        if delta:
            diff[name] = delta
    return diff


def command_deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Calls per command between two redis_commands() readings, the readings' own INFO left out."""
    deltas = {name: calls - before.get(name, 0) for name, calls in after.items()}
    deltas.pop("info", None)
    return {name: n for name, n in deltas.items() if n > 0}


def wait_quiet(
    pgids: list[int], *, timeout: float, window: float = 0.3, idle: float = 0.03
) -> bool:
    """Wait until the groups together spend under `idle` CPU seconds per `window` (work done).

    Bounded by timeout; returns whether quiet was reached.
    """
    deadline = time.monotonic() + timeout
    last = sum(cpu_seconds(p) for p in pgids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = sum(cpu_seconds(p) for p in pgids)
        if now - last < idle:
            return True
        last = now
    return False
