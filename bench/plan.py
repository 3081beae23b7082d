"""How big a run is (tiny / quick / full) and the context every scenario receives."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .procs import ProcessSet


@dataclass(frozen=True)
class Plan:
    """Request counts and time limits of one mode; every loop of a scenario is bounded by them."""

    mode: str
    submit_count: int  #: POST /jobs per concurrency level
    submit_concurrency: tuple[int, ...]
    e2e_count: int  #: short jobs per replica count, and Celery tasks
    e2e_concurrency: int
    wait_count: int  #: jobs of scenario 3's closed loop and of its Poisson arrivals
    waiters: tuple[int, ...]
    waiter_hold_s: float  #: how long the waiters are held while memory/CPU/reads are taken
    event_count: int
    sidecar_ops: int  #: per operation, phase and target
    sidecar_rounds: int  #: alternating sidecar / do-nothing rounds of scenario 6
    load_time_limit: float  #: per measured load phase
    settle_s: float  #: how long to wait for the last events after a load phase


PLANS = {
    "tiny": Plan("tiny", 12, (1, 16, 64), 12, 8, 6, (50,), 1.0, 4, 120, 1, 10.0, 6.0),
    "quick": Plan("quick", 200, (1, 16, 64), 150, 16, 40, (1000,), 2.0, 20, 1000, 2, 15.0, 15.0),
    "full": Plan(
        "full", 1500, (1, 16, 64), 3000, 16, 600, (1000, 10000), 5.0, 100, 4000, 3, 60.0, 30.0
    ),
}


class Context:
    """What scenarios share: the run's processes, folders, plan and progress output."""

    def __init__(self, plan: Plan, procs: ProcessSet, root: Path, workdir: Path) -> None:
        self.plan = plan
        self.procs = procs
        self.root = root
        self.workdir = workdir
        self.started = time.monotonic()

    def progress(self, message: str) -> None:
        """One line of progress, with the time since the run began."""
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def subdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path
