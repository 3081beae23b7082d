"""The local name-resolution registry: register, resolve, skip dead processes, unregister."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.nameresolution import AppNotFound, Instance, Registry, registry_dir


def test_registry_dir_from_env(tmp_path: Path) -> None:
    assert registry_dir({"DAPR_LOCAL_REGISTRY_DIR": str(tmp_path)}) == tmp_path
    assert str(os.getuid()) in registry_dir({}).name


def test_register_resolve_and_dead_pids(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Registry(tmp_path)
    stale.register(Instance("app", 1, 2, None, dead.pid))

    me = Registry(tmp_path)
    me.register(Instance("app", 3500, 50001, 8000, os.getpid()))
    found = Registry(tmp_path).resolve("app")
    assert (found.http_port, found.grpc_port, found.app_port) == (3500, 50001, 8000)
    assert not (tmp_path / f"app.{dead.pid}.json").exists()

    with pytest.raises(AppNotFound, match="couldn't find service: other"):
        Registry(tmp_path).resolve("other")
    me.unregister()
    with pytest.raises(AppNotFound):
        Registry(tmp_path).resolve("app")
