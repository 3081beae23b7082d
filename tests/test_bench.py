"""The benchmark: its arithmetic, and a tiny real run of every scenario so it cannot rot."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.job_times import delivery_ms, final_received_at, parse_time
from bench.load import paced, poisson, run_load
from bench.meters import reads_and_writes, state_commands
from bench.results import NotRun
from bench.stack import require_runnable
from bench.stats import at_least, at_most, per_op, percentile, rate, ratio, summarize

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("submit", "e2e", "wait", "waiters", "events", "sidecar", "outbox")
TINY_LIMIT_S = 100  # the tiny mode aims at under 60 s; the margin is for a busy shared machine


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([float(n) for n in range(1, 101)], 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("pct", [-1, 101])
def test_percentile_rejects_out_of_range(pct: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], pct)


def test_summary_of_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarize() -> None:
    summary = summarize([1.0, 2.0, 3.0, 10.0])
    assert (summary.count, summary.p50, summary.max, summary.mean) == (4, 2.5, 10.0, 4.0)
    assert summary.p99 == pytest.approx(9.79)


def test_rates_ratios_and_targets() -> None:
    assert rate(300, 2.0) == 150.0
    with pytest.raises(ValueError):
        rate(1, 0.0)
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0.0) is None
    assert per_op(0.5, 1000) == 0.0005
    with pytest.raises(ValueError):
        per_op(1.0, 0)
    assert at_most(10.0, 10.0) and not at_most(10.1, 10.0)
    assert at_least(1.0, 1.0) and not at_least(0.99, 1.0)


def test_load_schedules() -> None:
    assert paced(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    arrivals = poisson(20_000, 100.0, seed=7)
    assert arrivals == poisson(20_000, 100.0, seed=7)  # the same schedule every run
    assert arrivals[0] == 0.0
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 0.0
    assert 0.0097 < sum(gaps) / len(gaps) < 0.0103  # 1 / rate on average
    # Independent arrivals bunch up: about 1 - e^(-0.1) = 9.5 % come within 1 ms of the last.
    close = sum(1 for gap in gaps if gap < 0.001) / len(gaps)
    assert 0.085 < close < 0.105


async def test_open_loop_starts_calls_on_schedule() -> None:
    schedule = [0.0, 0.2, 0.4]
    started: dict[int, float] = {}
    origin = time.perf_counter()

    async def call(i: int) -> None:
        started[i] = time.perf_counter() - origin

    result = await run_load(call, count=3, concurrency=3, time_limit=5.0, start_at=schedule)
    assert result.ok == 3 and not result.timed_out
    # No call starts before its time (asyncio's timers may fire up to a clock tick early).
    assert all(started[i] >= offset - 0.002 for i, offset in enumerate(schedule))


def test_job_times_read_the_services_timestamps() -> None:
    assert parse_time("2026-11-22T10:00:00.500Z") == parse_time("2026-11-22T10:00:00.500+00:00")
    assert parse_time(None) is None
    view = {
        "createdAt": "2026-11-22T10:00:00.000Z",
        "completedAt": "2026-11-22T10:00:01.000Z",
        "events": [
            {"type": "job.created", "receivedAt": "2026-11-22T10:00:00.004000+00:00"},
            {"type": "job.updated", "receivedAt": "2026-11-22T10:00:00.500000+00:00"},
            {"type": "job.completed", "receivedAt": "2026-11-22T10:00:01.002500+00:00"},
        ],
    }
    delays = delivery_ms(view)
    assert delays["job.created"] == pytest.approx(4.0, abs=1e-3)
    assert delays["final"] == pytest.approx(2.5, abs=1e-3)
    assert final_received_at({"events": [{"type": "job.created", "receivedAt": "x"}]}) is None


def test_state_commands_leave_out_pubsub_machinery() -> None:
    before = {"hgetall": 5, "xreadgroup": 100, "evalsha": 1}
    after = {"hgetall": 7, "xreadgroup": 250, "evalsha": 1, "xautoclaim": 3, "get": 1}
    assert state_commands(before, after) == {"hgetall": 2, "get": 1}


def test_reads_and_writes_split_state_commands() -> None:
    assert reads_and_writes({"hgetall": 3, "hget": 2, "evalsha": 4, "hset": 1}) == (5, 5)


def test_a_missing_service_is_reported_as_not_run() -> None:
    with pytest.raises(NotRun, match="python -m no_such_service_here"):
        require_runnable("no_such_service_here")
    require_runnable("sidecar")


def _leftovers(marker: str) -> list[str]:
    """Command lines of live processes that mention the run's working folder."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{entry}: {cmdline[:200]}")
    return found


def _workdir(output: str) -> str:
    match = re.search(r"logs in (\S+)", output)
    assert match, output
    return match.group(1)


def _missing_dependency(reason: str) -> bool:
    """A not-run reason is honest only if the named module really has no __main__."""
    match = re.search(r"python -m (\w+)", reason)
    if match is None:
        return False
    return importlib.util.find_spec(f"{match.group(1)}.__main__") is None


@pytest.mark.e2e
@pytest.mark.timeout(TINY_LIMIT_S + 30)
def test_tiny_run_measures_every_scenario(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TINY_LIMIT_S,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert _leftovers(_workdir(run.stdout)) == []
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["mode"] == "tiny"
    assert document["machine"]["cores"] >= 1 and document["machine"]["python"]
    assert document["machine"]["packages"]["dapr"] == "1.18.3"
    scenarios = document["scenarios"]
    assert sorted(scenarios) == sorted(SCENARIOS)
    for key, scenario in scenarios.items():
        if scenario["status"] == "not run":
            assert _missing_dependency(scenario["reason"]), f"{key}: {scenario['reason']}"
            continue
        assert scenario["status"] == "ok", f"{key}: {scenario['reason']}\n{scenario['notes']}"
        assert scenario["rows"], key
        for row in scenario["rows"]:
            assert math.isfinite(row["value"]), (key, row)
    markdown = (tmp_path / "results.md").read_text()
    assert "Machine:" in markdown and "## Targets" in markdown
    assert "Libraries: dapr 1.18.3, grpcio " in markdown
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--tiny", "--only", "sidecar", "--out", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "the three operations via the sidecar" in line:
            break
    output = "".join(lines)
    assert "the three operations via the sidecar" in output, output
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output + rest
    assert _leftovers(_workdir(output)) == []
    assert (tmp_path / "results.json").exists()
