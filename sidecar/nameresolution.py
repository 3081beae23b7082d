"""Name resolution among the sidecars on this machine, standing in for daprd's mDNS resolver.

Each sidecar writes ``<appId>.<pid>.json`` into a shared registry folder and removes it on exit;
lookups skip entries whose process is gone. Results are cached briefly so a call does not read
the folder each time.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REGISTRY_ENV = "DAPR_LOCAL_REGISTRY_DIR"
_CACHE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Instance:
    app_id: str
    http_port: int
    grpc_port: int
    app_port: int | None
    pid: int
    address: str = "127.0.0.1"

    def to_json(self) -> str:
        return json.dumps(
            {
                "appId": self.app_id,
                "httpPort": self.http_port,
                "grpcPort": self.grpc_port,
                "appPort": self.app_port,
                "pid": self.pid,
                "address": self.address,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Instance:
        raw = json.loads(text)
        return cls(
            app_id=str(raw["appId"]),
            http_port=int(raw["httpPort"]),
            grpc_port=int(raw["grpcPort"]),
            app_port=None if raw.get("appPort") is None else int(raw["appPort"]),
            pid=int(raw["pid"]),
            address=str(raw.get("address", "127.0.0.1")),
        )


class AppNotFound(Exception):
    """No live sidecar is registered for this app id."""


def registry_dir(env: Mapping[str, str]) -> Path:
    """The folder from DAPR_LOCAL_REGISTRY_DIR, else a per-user folder in the temp dir."""
    configured = env.get(REGISTRY_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"dapr-local-registry-{os.getuid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Registry:
    """Registers this sidecar and resolves others; one per sidecar process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._own: Path | None = None
        self._cache: dict[str, tuple[float, list[Instance]]] = {}
        self._turn = itertools.count()

    def register(self, instance: Instance) -> None:
        # Private to this user: an entry decides where calls (and the API token) are sent.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{instance.app_id}.{instance.pid}.json"
        # Write then rename, so a reader never sees half a file.
        temporary = path.with_suffix(".tmp")
        temporary.write_text(instance.to_json(), encoding="utf-8")
        temporary.replace(path)
        self._own = path
        logger.info("registered app %s in %s", instance.app_id, self.directory)

    def unregister(self) -> None:
        if self._own is not None:
            self._own.unlink(missing_ok=True)
            self._own = None

    def resolve(self, app_id: str) -> Instance:
        """One live instance of ``app_id`` (round-robin across replicas), or AppNotFound."""
        now = time.monotonic()
        cached = self._cache.get(app_id)
        if cached is None or now - cached[0] > _CACHE_SECONDS:
            cached = (now, self._scan(app_id))
            self._cache[app_id] = cached
        instances = cached[1]
        if not instances:
            raise AppNotFound(f"couldn't find service: {app_id}")
        return instances[next(self._turn) % len(instances)]

    def forget(self, app_id: str) -> None:
        """Drop the cached lookup, e.g. after a connection to the instance failed."""
        self._cache.pop(app_id, None)

    def _scan(self, app_id: str) -> list[Instance]:
        found: list[Instance] = []
        for path in self.directory.glob(f"{app_id}.*.json"):
            try:
                instance = Instance.from_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError, KeyError):
                logger.warning("ignoring unreadable registry entry %s", path)
                continue
            if instance.app_id != app_id:
                continue
            if not pid_alive(instance.pid):
                path.unlink(missing_ok=True)
                continue
            found.append(instance)
        return found
