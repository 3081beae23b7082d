"""How the outbox takes projections out of a transaction: daprd 1.18.3's PublishInternal loop.

The expected answers are what that loop (``for i, op := range operations { ... operations =
append(operations[:i], operations[i+1:]...) }``) gives when run by Go itself (go1.19) on the
same operations: a projection right after another stays a plain upsert, and a record ahead of its
projection for two keys or more panics.
"""

from __future__ import annotations

import pytest

from sidecar.outbox import ProjectionPanic, take_projections
from sidecar.state.base import SetRequest


def op(name: str) -> SetRequest:
    """``a`` is key a's record, ``a'`` its projection."""
    projection = name.endswith("'")
    metadata = {"outbox.projection": "true"} if projection else {}
    return SetRequest(key=name.rstrip("'"), value=name.encode(), metadata=metadata)


@pytest.mark.parametrize(
    ("given", "kept", "projections"),
    [
        ("a a'", "a", {"a": "a'"}),
        ("a' a", "a", {"a": "a'"}),
        ("a' a b' b", "a b", {"a": "a'", "b": "b'"}),
        ("a' a b' b c' c", "a b c", {"a": "a'", "b": "b'", "c": "c'"}),
        ("a' a b' b c' c a b", "a b c a b", {"a": "a'", "b": "b'", "c": "c'"}),
        ("a' a b b' b", "a b b", {"a": "a'", "b": "b'"}),
        # b' comes right after a' is taken out: the range skips it, and it is stored.
        ("a' b' a b", "b' a b", {"a": "a'"}),
    ],
)
def test_projections_are_taken_as_daprd_takes_them(
    given: str, kept: str, projections: dict[str, str]
) -> None:
    left, taken = take_projections([op(name) for name in given.split()])
    assert [o.value.decode() for o in left] == kept.split()
    assert {key: o.value.decode() for key, o in taken.items()} == projections


@pytest.mark.parametrize(
    ("given", "bounds"),
    [("a a' b b'", "[4:2]"), ("a b a' b'", "[4:3]"), ("a a' b b' c c'", "[5:3]")],
)
def test_records_ahead_of_their_projections_panic_daprd(given: str, bounds: str) -> None:
    with pytest.raises(ProjectionPanic, match=rf"slice bounds out of range \{bounds[:-1]}\]"):
        take_projections([op(name) for name in given.split()])
