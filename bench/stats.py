"""Pure arithmetic of the benchmark: percentiles, rates and ratios, kept free of I/O to test it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], pct: float) -> float:
    """The pct-th percentile (0-100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """The distribution of one set of latencies, in the unit they were given in."""

    count: int
    p50: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50": self.p50,
            "p99": self.p99,
            "max": self.max,
            "mean": self.mean,
        }


def summarize(samples: Sequence[float]) -> Summary:
    """p50/p99/max/mean of samples (at least one)."""
    if not samples:
        raise ValueError("summary of no samples")
    return Summary(
        count=len(samples),
        p50=percentile(samples, 50),
        p99=percentile(samples, 99),
        max=max(samples),
        mean=sum(samples) / len(samples),
    )


def rate(count: int, seconds: float) -> float:
    """Events per second; zero elapsed time is a measuring error, not infinity."""
    if seconds <= 0:
        raise ValueError(f"elapsed time must be positive, got {seconds}")
    return count / seconds


def ratio(value: float, reference: float) -> float | None:
    """value / reference, or None when the reference is zero (no meaningful ratio)."""
    if reference == 0:
        return None
    return value / reference


def per_op(total: float, ops: int) -> float:
    """A total (CPU seconds, calls ...) divided over the operations that caused it."""
    if ops <= 0:
        raise ValueError(f"operation count must be positive, got {ops}")
    return total / ops


def at_most(value: float, limit: float) -> bool:
    """Whether a 'lower is better' figure meets its target."""
    return value <= limit


def at_least(value: float, limit: float) -> bool:
    """Whether a 'higher is better' figure meets its target."""
    return value >= limit
