"""The local runner (what `./start.sh` runs without the Dapr CLI) writes each run's logs to
``.dapr/logs/`` as the CLI names them, and keeps only the newest runs' files, so the folder does
not grow run after run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from sidecar.runner_logs import KEPT_RUNS
from tests.procs import PYTHON, ROOT, ManagedProcess, free_port, wait_until_http
from tests.sidecar.api.conftest import TINY_APP

pytestmark = pytest.mark.e2e

_RUN_FILE = """\
version: 1
common:
  resourcesPaths: ["./resources"]
apps:
  - appID: solo
    appDirPath: .
    appPort: {app_port}
    daprHTTPPort: {http_port}
    daprGRPCPort: {grpc_port}
    metricsPort: {metrics_port}
    command: ["{python}", "{app}"]
"""


@pytest.mark.timeout(90)
def test_runner_keeps_the_newest_runs_logs(tmp_path: Path) -> None:
    logs = tmp_path / ".dapr" / "logs"
    logs.mkdir(parents=True)
    earlier = {
        kind: [logs / f"solo_{kind}_2000010100000{run}.log" for run in range(7)]
        for kind in ("app", "daprd")
    }
    for files in earlier.values():
        for path in files:
            path.write_text("an earlier run\n")
    other_app = logs / "solo_x_daprd_20000101000000.log"  # an app whose id begins alike
    other_app.write_text("another app\n")
    (tmp_path / "resources").mkdir()  # no components: the sidecar needs no Redis
    http_port = free_port()
    run_file = tmp_path / "dapr.yaml"
    run_file.write_text(
        _RUN_FILE.format(
            app_port=free_port(),
            http_port=http_port,
            grpc_port=free_port(),
            metrics_port=free_port(),
            python=PYTHON,
            app=TINY_APP,
        )
    )
    runner = ManagedProcess(
        "runner",
        [PYTHON, "-m", "sidecar", "run", "-f", str(run_file)],
        env={"DAPR_LOCAL_REGISTRY_DIR": str(tmp_path / "registry")},
        cwd=ROOT,
        log_dir=tmp_path,
    ).start()
    try:
        wait_until_http(f"http://127.0.0.1:{http_port}/v1.0/healthz", process=runner, timeout=60)
        assert runner.proc is not None
        os.kill(runner.pid, signal.SIGTERM)
        assert runner.proc.wait(timeout=30) == 0
    finally:
        runner.stop()
    for kind, files in earlier.items():
        kept = sorted(logs.glob(f"solo_{kind}_*.log"))
        assert len(kept) == KEPT_RUNS, kept
        assert kept[:-1] == files[-(KEPT_RUNS - 1) :]  # the newest earlier runs'
        assert kept[-1].read_text() != "an earlier run\n"  # and this run's
    assert other_app.exists()
