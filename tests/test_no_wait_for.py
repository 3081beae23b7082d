"""No service or sidecar code bounds a wait with ``asyncio.wait_for``.

On Python 3.11 (the oldest this project supports) ``wait_for`` returns the inner result when
the waiting task is cancelled in the moment that result comes in, and the cancellation is
lost. A replica stopping at that moment ran a job to its end instead of handing it back.
``asyncio.timeout`` keeps the cancellation; ``test_worker_shutdown.py`` shows the store's calls
do.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sidecar", "job_orchestrator", "microservice_x", "dapr_support")


def _wait_for_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "wait_for"
        and isinstance(node.value, ast.Name)
        and node.value.id == "asyncio"
    ]


def found_in(package: str, lines_of: Callable[[Path], list[int]]) -> list[str]:
    """``path:line`` of every place ``lines_of`` finds in the package's modules."""
    return [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in lines_of(path)
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_asyncio_wait_for(package: str) -> None:
    found = found_in(package, _wait_for_calls)
    assert found == [], "use asyncio.timeout instead: " + ", ".join(found)
