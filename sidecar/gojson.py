"""How Go's encoding/json matches a JSON object's keys to a struct's fields, which daprd relies
on for what apps send it (a subscriber's ``{"status": ...}``, the ``GET /dapr/subscribe`` list).

A key matches a field whose JSON name it equals ignoring case (Go folds ``ſ`` to ``s`` and the
Kelvin sign to ``k`` too); each matching key is decoded into the field in turn, so the last one
wins, and a ``null`` leaves a string, number, bool or struct field as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The non-ASCII letters Go's foldName (``unicode.ToUpper(unicode.ToLower(r))``) turns into
#: ASCII ones; any other non-ASCII letter can never match an ASCII field name.
_FOLDED_TO_ASCII = str.maketrans({"ſ": "S", "\u212a": "K", "ı": "I", "İ": "I"})


def folded(name: str) -> str:
    """A JSON key or field name as Go compares them (simple case folding: no "ß" to "SS")."""
    if name.isascii():
        return name.upper()
    return "".join(c.upper() if c.isascii() else c for c in name.translate(_FOLDED_TO_ASCII))


def values(obj: Mapping[str, Any], name: str) -> list[Any]:
    """The values of every key Go decodes into the field called ``name``, in order."""
    wanted = folded(name)
    return [item for key, item in obj.items() if key == name or folded(key) == wanted]


def field(obj: Mapping[str, Any], name: str, *, null_clears: bool = False) -> Any:
    """The value Go leaves in the field called ``name`` (None when no key sets it).

    ``null_clears``: the field is a map, slice or pointer, which a later ``null`` sets to nil.
    """
    value = None
    for item in values(obj, name):
        if item is not None or null_clears:
            value = item
    return value
