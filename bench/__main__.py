"""`python -m bench [--quick|--tiny] [--out DIR]`: run every scenario, write results, stop all.

Each scenario starts its own processes and they are stopped after it, whatever happens; a
scenario whose dependency is missing reports why instead of numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType

from . import (
    machine,
    report,
    scenario_e2e,
    scenario_events,
    scenario_outbox,
    scenario_sidecar,
    scenario_submit,
    scenario_wait,
    scenario_waiters,
)
from .plan import PLANS, Context
from .procs import ProcessSet
from .results import FAILED, NOT_RUN, OK, NotRun, ScenarioResult

ROOT = Path(__file__).resolve().parent.parent
Scenario = Callable[[Context, ScenarioResult], Awaitable[None]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "submit": ("1. Submit throughput (POST /jobs -> 202)", scenario_submit.run),
    "e2e": ("2. End-to-end short jobs vs Celery", scenario_e2e.run),
    "wait": ("3. Wait-with-timeout: final -> 200", scenario_wait.run),
    "waiters": ("4. Many concurrent waiters on one replica", scenario_waiters.run),
    "events": ("5. Event delivery: orchestrator -> microservice-x", scenario_events.run),
    "sidecar": ("6. Sidecar cost per operation (SDK)", scenario_sidecar.run),
    "outbox": ("7. Outbox transactions: the direct path vs daprd's relay", scenario_outbox.run),
}
#: Wall-clock budget of one scenario per mode, set-up included.
BUDGET_S = {"tiny": 40.0, "quick": 75.0, "full": 420.0}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="under 2 minutes")
    size.add_argument("--tiny", action="store_true", help="a handful of requests per scenario")
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="where results go")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(SCENARIOS)}"
    )
    return parser.parse_args(argv)


async def _run_one(ctx: Context, key: str, budget: float) -> ScenarioResult:
    title, scenario = SCENARIOS[key]
    ctx.progress(f"{title}: starting")
    started = time.monotonic()
    result = ScenarioResult(key, title)
    try:
        await asyncio.wait_for(scenario(ctx, result), budget)
    except NotRun as exc:
        result.status, result.reason = NOT_RUN, str(exc)
    except TimeoutError:
        result.status, result.reason = FAILED, f"did not finish within {budget:.0f} s"
    except Exception as exc:
        result.status, result.reason = FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        result.notes.append(traceback.format_exc()[-3000:])
    finally:
        ctx.procs.stop_all()
    result.extra["process_cpu_seconds"] = dict(ctx.procs.cpu_totals)
    ctx.procs.cpu_totals.clear()
    result.seconds = time.monotonic() - started
    verdict = result.status if result.status == OK else f"{result.status}: {result.reason[:300]}"
    ctx.progress(f"{title}: {verdict} ({result.seconds:.0f} s)")
    return result


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = _parse(sys.argv[1:] if argv is None else argv)
    mode = "tiny" if options.tiny else "quick" if options.quick else "full"
    keys = [k.strip() for k in options.only.split(",") if k.strip()] or list(SCENARIOS)
    unknown = set(keys) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="[bench] %(levelname)s %(message)s")
    # Ctrl-C too: asyncio.run's own SIGINT handling only cancels the running task, which a
    # scenario's clean-up may absorb, and the run would then go on.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    options.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    procs = ProcessSet(workdir / "logs", ROOT)
    ctx = Context(PLANS[mode], procs, ROOT, workdir)
    described = machine.describe()
    ctx.progress(f"{mode} mode on {described['cpu']} x{described['cores']}, logs in {workdir}")
    results: list[ScenarioResult] = []
    interrupted = False
    try:
        for key in keys:
            results.append(asyncio.run(_run_one(ctx, key, BUDGET_S[mode])))
    except KeyboardInterrupt:
        interrupted = True
        ctx.progress("interrupted: stopping every process started")
    finally:
        procs.stop_all()
    report.write_json(options.out / "results.json", described, mode, results)
    (options.out / "results.md").write_text(report.markdown(described, mode, results))
    report.chart(options.out / "latency.png", results)
    ctx.progress(f"wrote {options.out}/results.json, results.md, latency.png")
    if interrupted:
        return 130
    if all(r.status == OK for r in results) and not options.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        ctx.progress(f"the processes' logs are in {workdir / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
