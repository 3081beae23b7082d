"""`./start.sh` installs the project alone to run it and the test tools only for `./start.sh test`,
and installs again only what the stamp says is missing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT, free_port

pytestmark = pytest.mark.e2e

#: Stands in for .venv/bin/python: records what pip is asked to do (and does nothing), and
#: hands everything else to this interpreter.
_FAKE_PYTHON = """#!/bin/sh
if [ "$1" = -m ] && [ "$2" = pip ]; then
    shift 2
    echo "$*" >>"$PIP_CALLS"
    exit 0
fi
exec {python} "$@"
"""


def _checkout(folder: Path) -> Path:
    """start.sh and pyproject.toml in ``folder``, with a .venv whose python fakes pip."""
    shutil.copy2(ROOT / "start.sh", folder / "start.sh")
    shutil.copy2(ROOT / "pyproject.toml", folder / "pyproject.toml")
    python = folder / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(_FAKE_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    return folder / ".venv" / ".installed-stamp"


def _installs(folder: Path, *args: str) -> list[str]:
    """What one ``./start.sh ARGS`` in ``folder`` asked pip to install. It stops right after its
    set-up: REDIS_PORT and the orchestrator's port are held by something that is not Redis."""
    calls = folder / "pip-calls"
    calls.write_text("")
    with (
        socket.create_server(("127.0.0.1", 0)) as redis,
        socket.create_server(("127.0.0.1", 0)) as app,
    ):
        env = {
            **os.environ,
            "PIP_CALLS": str(calls),
            "REDIS_PORT": str(redis.getsockname()[1]),
            "ORCHESTRATOR_PORT": str(app.getsockname()[1]),
            "MICROSERVICE_X_PORT": str(free_port()),
        }
        done = subprocess.run(
            [str(folder / "start.sh"), *args],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    return [line.split()[-1] for line in calls.read_text().splitlines() if "-e" in line.split()]


@pytest.mark.timeout(120)
def test_run_installs_the_project_and_test_adds_the_tools(tmp_path: Path) -> None:
    stamp = _checkout(tmp_path)
    assert _installs(tmp_path) == ["."]
    assert stamp.read_text().split()[-1] == "."
    assert _installs(tmp_path, "test") == [".[test]"]
    assert stamp.read_text().split()[-1] == ".[test]"
    # The tools include the project: neither set-up installs anything again.
    assert _installs(tmp_path) == []
    assert _installs(tmp_path, "test") == []


@pytest.mark.timeout(120)
def test_a_changed_pyproject_installs_again(tmp_path: Path) -> None:
    stamp = _checkout(tmp_path)
    # A stamp of the checksum alone: written when every set-up installed the test tools.
    checksum = subprocess.run(
        ["sh", "-c", "cksum <pyproject.toml"], cwd=tmp_path, capture_output=True, text=True
    )
    stamp.write_text(checksum.stdout)
    assert _installs(tmp_path, "test") == []
    with (tmp_path / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# changed\n")
    assert _installs(tmp_path) == ["."]
