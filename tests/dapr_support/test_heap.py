"""heap.settle: start-up's garbage collected once, everything left exempt from later passes."""

from __future__ import annotations

import gc
import weakref

from dapr_support import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_settle_collects_cycles_then_freezes_the_survivors() -> None:
    gc.unfreeze()
    garbage = _Node()
    dead = weakref.ref(garbage)
    del garbage
    kept = _Node()
    try:
        heap.settle()
        assert dead() is None
        assert gc.get_freeze_count() > 0
        # Frozen objects are skipped by every later collection, full ones included.
        assert not any(obj is kept for obj in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(obj is kept for obj in gc.get_objects())
