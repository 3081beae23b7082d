"""Which parts of the event a CEL rule can observe, so only those are converted per message.

Handing an event to the CEL engine converts every value in it (about 2.5 µs per string here),
while a routing rule such as ``event.type == "job.created"`` reads one field. The rules of a
subscription are scanned once for the ways they use ``event``:

- ``event.a.b`` used as a value keeps ``a.b`` whole;
- ``has(event.a.b)`` only needs to know whether ``b`` is there, and ``type(event.a)`` only what
  kind of value ``a`` is, so they keep the key, and a map under it may lose the fields no
  other use reads;
- anything else (``event`` on its own, ``event.a[0]``, ``event.a.exists(...)``, ``size(event.a)``,
  ``event.?a``, the word inside a string) keeps what it touches whole, so a use this scan does
  not understand can only make the projection bigger, never change a result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_CHAIN = re.compile(r"(?<![\w.])event((?:\s*\.\s*[A-Za-z_]\w*)*)")
_MEMBER = re.compile(r"[A-Za-z_]\w*")
_SHAPE_ONLY = re.compile(r"(?<![\w.])(?:has|type)\s*\(\s*$")


@dataclass
class Projection:
    """The part of a map value the rules can observe.

    ``whole``: the value is kept as it is. Otherwise a map keeps only ``fields`` (each
    projected in turn) and any other value is kept as it is.
    """

    whole: bool = False
    fields: dict[str, Projection] = field(default_factory=dict)

    def _at(self, path: Iterable[str]) -> Projection:
        node = self
        for name in path:
            node = node.fields.setdefault(name, Projection())
        return node

    def apply(self, value: Any) -> Any:
        if self.whole or not isinstance(value, Mapping):
            return value
        return {
            name: child.apply(value[name]) for name, child in self.fields.items() if name in value
        }


def projection(expressions: Iterable[str]) -> Projection:
    """What of ``event`` the expressions can observe (``whole`` when it cannot be narrowed)."""
    root = Projection()
    for expression in expressions:
        for match in _CHAIN.finditer(expression):
            path = _MEMBER.findall(match.group(1))
            after = expression[match.end() :].lstrip()
            if after.startswith("(") and path:
                # event.a.m(...): a method or macro on event.a, which sees all of it.
                root._at(path[:-1]).whole = True
            elif after.startswith(")") and _SHAPE_ONLY.search(expression[: match.start()]):
                root._at(path)  # has(...) / type(...): the key and the kind of its value
            else:
                root._at(path).whole = True
    return root
