"""Job types from the user's own modules (``JOB_HANDLERS=package.module:registry,...``).

A module holds a ``HandlerRegistry`` and decorates its handlers with it; the orchestrator adds
them to the built-in ones at start, so ``python -m job_orchestrator`` runs them unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from job_orchestrator.handlers import HandlerRegistry, default_registry


class HandlerModuleError(Exception):
    """A ``JOB_HANDLERS`` entry cannot be loaded; the message names it and why."""


def load_registry(specs: Sequence[str]) -> HandlerRegistry:
    """The built-in job types plus those of each ``module:attribute`` in ``specs``."""
    registry = default_registry()
    for spec in specs:
        try:
            registry.include(_load(spec))
        except ValueError as exc:
            raise HandlerModuleError(f"JOB_HANDLERS entry {spec!r}: {exc}") from None
    return registry


def _load(spec: str) -> HandlerRegistry:
    module_name, _, attribute = spec.partition(":")
    where = f"JOB_HANDLERS entry {spec!r}"
    if not module_name or not attribute:
        raise HandlerModuleError(f"{where}: expected module:attribute, e.g. myjobs:registry")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerModuleError(f"{where}: cannot import {module_name}: {exc}") from exc
    found = getattr(module, attribute, None)
    if not isinstance(found, HandlerRegistry):
        what = "nothing" if found is None else type(found).__name__
        raise HandlerModuleError(
            f"{where}: {module_name}.{attribute} is {what}, not a HandlerRegistry"
        )
    return found
