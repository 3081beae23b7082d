"""A task that closes something keeps its own cancellation.

``task.cancel()`` then ``with suppress(CancelledError): await task`` swallows two cancellations
alike: the one asked of ``task`` and one of the task that is closing, should it come while that
waits. The closing task then goes on as if nothing had asked it to stop, as a stopping replica
once ran a job to its end (``test_no_wait_for.py``). ``asyncio.gather(task,
return_exceptions=True)`` waits the same and lets the outer cancellation through.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from sidecar.state.memory import MemoryStateStore
from tests.test_no_wait_for import PACKAGES, found_in


def _suppressed_cancels(path: Path) -> list[int]:
    """Lines of ``with [contextlib.]suppress(..., [asyncio.]CancelledError, ...)`` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.With | ast.AsyncWith):
            continue
        for item in node.items:
            call = item.context_expr
            if not isinstance(call, ast.Call):
                continue
            name = call.func.attr if isinstance(call.func, ast.Attribute) else None
            name = call.func.id if isinstance(call.func, ast.Name) else name
            if name != "suppress":
                continue
            if any(ast.unparse(arg).endswith("CancelledError") for arg in call.args):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("package", PACKAGES)
def test_no_suppressed_cancellation(package: str) -> None:
    found = found_in(package, _suppressed_cancels)
    assert found == [], "await asyncio.gather(task, return_exceptions=True): " + ", ".join(found)


async def test_closing_a_store_keeps_the_closers_cancellation() -> None:
    store = MemoryStateStore("s")
    await store.init()
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)  # closing now waits for the sweeper to end
    assert not closing.done()
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
