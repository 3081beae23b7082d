"""The services' entry points pick grpc core's polling engine before grpc is imported, unless
told; the sidecar keeps grpc's default.

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

ROOT = Path(__file__).resolve().parent.parent
ENTRY_MODULES = ["job_orchestrator.__main__", "microservice_x.__main__"]
UNSEEN = "<grpc not imported>"

#: Imports argv[1] (not run as a script) and reports the variable argv[2] as grpc saw it when
#: first imported (argv[3] if it never was), and after the import.
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
    assert seen["at_grpc_import"] == grpc_engine.POLLING_ENGINE  # grpc is imported, after it
    assert seen["after"] == grpc_engine.POLLING_ENGINE


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_a_value_given_by_the_caller_is_kept(module: str) -> None:
    seen = _probe(module, "")  # empty: grpc's own defaults
    assert seen["at_grpc_import"] == seen["after"] == ""


def test_the_sidecar_keeps_grpcs_default_engine() -> None:
    seen = _probe("sidecar.__main__", None)
    assert seen["after"] is None
    assert seen["at_grpc_import"] in (None, UNSEEN)
