"""The peer of scenario 2: Celery with a Redis broker and result backend running a no-op task.

`python -m bench.celery_peer --broker URL --concurrency N` runs a worker (prefork, N processes);
run_clients() submits tasks and waits for their results at a given concurrency, as the
orchestrator's scenario does with jobs.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery

from .load import LoadResult

TASK = "bench.noop"


def make_app(broker_url: str, *, with_task: bool = True) -> Celery:
    """A Celery app on one Redis as broker and result backend; the worker's has the task."""
    app = Celery("bench", broker=broker_url, backend=broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        result_expires=600,
    )

    if with_task:

        @app.task(name=TASK)  # type: ignore[untyped-decorator]
        def noop() -> None:
            """Does nothing: what is measured is the system's cost per task."""

    return app


def worker_ready(app: Celery) -> bool:
    """Whether a worker answers a ping."""
    try:
        return bool(app.control.ping(timeout=0.5))
    except Exception:  # the broker may not accept connections yet
        return False


def run_clients(app: Celery, *, count: int, concurrency: int, time_limit: float) -> LoadResult:
    """Submit `count` no-op tasks, each client thread waiting for its result before the next."""
    result = LoadResult()
    lock = threading.Lock()
    next_index = 0
    deadline = time.perf_counter() + time_limit
    task = app.signature(TASK)

    def client() -> None:
        nonlocal next_index
        while time.perf_counter() < deadline:
            with lock:
                if next_index >= count:
                    return
                next_index += 1
            t0 = time.perf_counter()
            try:
                task.apply_async().get(timeout=max(1.0, deadline - time.perf_counter() + 5))
            except Exception as exc:  # counted in the results, never hidden
                with lock:
                    result.add_error(exc)
                continue
            with lock:
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(client)
    result.elapsed_s = time.perf_counter() - started
    result.timed_out = next_index < count
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.celery_peer", description=__doc__)
    parser.add_argument("--broker", required=True, help="redis:// URL")
    parser.add_argument("--concurrency", type=int, default=1)
    options = parser.parse_args()
    app = make_app(options.broker)
    argv: list[Any] = ["worker", "--pool=prefork", f"--concurrency={options.concurrency}"]
    argv += ["--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    app.worker_main(argv)


if __name__ == "__main__":
    main()
