"""Every entry point picks grpc core's polling engine before grpc is imported, unless told.

grpc reads ``GRPC_EXPERIMENTS`` once, when it is imported: set later, it changes nothing. Each
check imports an entry module in a fresh interpreter whose import hook notes the variable at
the moment grpc itself is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dapr_support import grpc_engine
from sidecar import grpc_engine as sidecar_grpc_engine

ROOT = Path(__file__).resolve().parent.parent
ENTRY_MODULES = [
    "sidecar.__main__",
    "job_orchestrator.__main__",
    "microservice_x.__main__",
    "bench.__main__",
]
UNSEEN = "<grpc not imported>"

#: Imports argv[1] (not run as a script) and reports the variable argv[2] as grpc saw it when
#: first imported (argv[3] if it never was), after the import, and in CALLER_ENVIRONMENT.
PROBE = """
import importlib, importlib.abc, json, os, sys
module_name, variable, unseen = sys.argv[1:4]
seen = {"at_grpc_import": unseen}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "grpc" and seen["at_grpc_import"] == unseen:
            seen["at_grpc_import"] = os.environ.get(variable)
        return None
sys.meta_path.insert(0, Watch())
module = importlib.import_module(module_name)
seen["after"] = os.environ.get(variable)
caller = getattr(module, "CALLER_ENVIRONMENT", None)
seen["caller"] = None if caller is None else caller.get(variable, "<unset>")
print(json.dumps(seen))
"""


def _probe(module: str, value: str | None) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k != grpc_engine.VARIABLE}
    if value is not None:
        env[grpc_engine.VARIABLE] = value
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module, grpc_engine.VARIABLE, UNSEEN],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen: dict[str, str | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_the_polling_engine_is_set_before_grpc_is_imported(module: str) -> None:
    seen = _probe(module, None)
    assert seen["after"] == grpc_engine.POLLING_ENGINE
    if seen["at_grpc_import"] != UNSEEN:
        assert seen["at_grpc_import"] == grpc_engine.POLLING_ENGINE


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_a_value_given_by_the_caller_is_kept(module: str) -> None:
    seen = _probe(module, "")  # empty: grpc's own defaults
    assert seen["after"] == ""
    if seen["at_grpc_import"] != UNSEEN:
        assert seen["at_grpc_import"] == ""


def test_the_services_entry_points_import_grpc_after_the_setting() -> None:
    """Not vacuous: the services' entry modules do import grpc while being imported."""
    for module in ("job_orchestrator.__main__", "microservice_x.__main__"):
        assert _probe(module, None)["at_grpc_import"] == grpc_engine.POLLING_ENGINE


def test_apps_started_by_sidecar_run_get_the_environment_as_given() -> None:
    """``python -m sidecar run`` must not hand its own grpc setting to the user's app."""
    assert _probe("sidecar.__main__", None)["caller"] == "<unset>"
    assert _probe("sidecar.__main__", "x")["caller"] == "x"


def test_the_sidecar_and_the_services_ask_for_the_same_engine() -> None:
    assert sidecar_grpc_engine.VARIABLE == grpc_engine.VARIABLE
    assert sidecar_grpc_engine.POLLING_ENGINE == grpc_engine.POLLING_ENGINE
