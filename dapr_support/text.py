"""Text a JSON body may carry that is not Unicode, found before it is stored or passed on."""

from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_at(value: Any, path: str) -> str | None:
    """The path of a string in ``value`` holding an unpaired UTF-16 surrogate, or None.

    JSON lets ``"\\ud800"`` through and Python's parser keeps it, but it is no Unicode text:
    it cannot be stored, published or answered as UTF-8. Walked without recursion, so input as
    deep as the JSON parser accepted is no problem here.
    """
    todo: list[tuple[str, Any]] = [(path, value)]
    while todo:
        where, item = todo.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                step = f"{where}.{ascii(key)[1:-1]}"
                if _LONE_SURROGATE.search(key):
                    return step
                todo.append((step, child))
        elif isinstance(item, list):
            todo.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each unpaired surrogate replaced by U+FFFD, as Go's JSON reading does."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def unicode_problem(value: Any, path: str) -> str | None:
    """Why ``value`` cannot be written as UTF-8, naming where; None when it can."""
    where = lone_surrogate_at(value, path)
    if where is None:
        return None
    return (
        f"the text at {where} holds an unpaired UTF-16 surrogate (a \\ud800 to \\udfff "
        "escape without its partner), which is not Unicode; send well-formed text"
    )
