"""Copying a decoded JSON value with some of its scalars replaced, without recursion: a value
may be nested as deep as a parser allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Returns a scalar's replacement, or the scalar itself.
Replace = Callable[[Any], Any]


def replaced(value: Any, replace: Replace) -> Any:
    """A copy of ``value`` whose dicts and lists are new and whose scalars are ``replace``d."""
    root: list[Any] = [value]
    todo: list[tuple[Any, Any]] = [(root, 0)]  #: (container, key) of each value still to copy
    while todo:
        parent, key = todo.pop()
        item = parent[key]
        if isinstance(item, dict):
            parent[key] = mapping = dict(item)
            todo.extend((mapping, k) for k in mapping)
        elif isinstance(item, list):
            parent[key] = items = list(item)
            todo.extend((items, i) for i in range(len(items)))
        else:
            parent[key] = replace(item)
    return root[0]
