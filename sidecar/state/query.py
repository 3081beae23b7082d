"""The state query API's filter language translated to SQL over a jsonb ``value`` column.

Same translation as components-contrib's postgresql v1 (postgresql_query.go): a key path
``a.b`` becomes ``value->'a'->>'b'``, every value is bound as Go's ``%v`` text, so
comparisons are textual; GT/GTE/LT/LTE refuse strings; ``page.token`` is an OFFSET and a
query with a limit always returns the next offset as its token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.gofmt import go_format
from sidecar.json_reader import fast_loads

_COMPARISONS = {"EQ": "=", "NEQ": "!=", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
_ORDERING = frozenset({"GT", "GTE", "LT", "LTE"})
_GO_INT = re.compile(r"[+-]?[0-9]+")


class QueryError(ValueError):
    """The query is malformed or uses something the store refuses."""


@dataclass(frozen=True, slots=True)
class SqlQuery:
    sql: str
    params: list[str] = field(default_factory=list)
    limit: int = 0  #: page.limit; 0 = no paging
    skip: int = 0  #: offset parsed from page.token

    def next_token(self, returned: int) -> str:
        """Contrib's token: the next offset whenever a limit was given, else ""."""
        return str(self.skip + returned) if self.limit else ""


def field_path(key: str) -> str:
    """``data.owner`` -> ``value->'data'->>'owner'`` (the last step extracts text)."""
    steps = ["'" + part.replace("'", "''") + "'" for part in key.split(".")]
    return "value" + "".join("->" + step for step in steps[:-1]) + "->>" + steps[-1]


class _Builder:
    def __init__(self) -> None:
        self.params: list[str] = []

    def bind(self, key: str, op: str, value: object) -> str:
        self.params.append(go_format(value))
        return f"{field_path(key)}{op}${len(self.params)}"

    def filter(self, unit: Mapping[str, object]) -> str:
        """SQL for a filter ``check_filter`` accepted."""
        ((name, body),) = unit.items()
        if name in ("AND", "OR"):
            assert isinstance(body, list)
            return "(" + f" {name} ".join(self.filter(entry) for entry in body) + ")"
        assert isinstance(body, Mapping)
        ((key, value),) = body.items()
        if name == "IN":
            assert isinstance(value, list)
            if not value:
                raise QueryError(f'empty IN operator for key "{key}"')
            return "(" + " OR ".join(self.bind(key, "=", v) for v in value) + ")"
        if name in _ORDERING and isinstance(value, str):
            raise QueryError(f"unsupported type of value {value}; string type not permitted")
        return self.bind(key, _COMPARISONS[name], value)


def parse_query(text: bytes) -> dict[str, object]:
    """A query body decoded as daprd decodes it into contrib's ``query.Query``, before any
    store sees it: JSON, the fields' types, then ``ParseFilter``. QueryError otherwise."""
    try:
        query = fast_loads(text)  # json.Unmarshal's errors, "unexpected end of JSON input" too
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    if query is None:  # Go's Unmarshal of null leaves the query empty
        return {}
    if not isinstance(query, dict):
        raise QueryError("the query must be a JSON object")
    filters = query.get("filter")
    if filters is not None and not isinstance(filters, Mapping):
        raise QueryError("filter must be a JSON object")
    if filters:
        check_filter(filters)
    _check_sort(query.get("sort"))
    _check_page(query.get("page"))
    return query


def check_filter(unit: object) -> None:
    """contrib's ParseFilter: the filter's structure, in its words."""
    if not isinstance(unit, Mapping):
        raise QueryError("filter unit must be a map")
    if len(unit) != 1:
        raise QueryError("filter unit must have a single element")
    ((name, body),) = unit.items()
    if name in ("AND", "OR"):
        if not isinstance(body, list):
            raise QueryError(f"{name} filter must be an array")
        if len(body) < 2:
            raise QueryError(f"{name} filter must contain at least two entries")
        for entry in body:
            check_filter(entry)
        return
    if name not in _COMPARISONS and name != "IN":
        raise QueryError(f'unsupported filter "{name}"')
    if not isinstance(body, Mapping):
        raise QueryError(f"{name} filter must be a map")
    if len(body) != 1:
        raise QueryError(f"{name} filter must contain a single key/value pair")
    ((_, value),) = body.items()
    if name == "IN" and not isinstance(value, list):
        raise QueryError("IN filter value must be an array")


def _check_sort(sort: object) -> None:
    if sort is None:
        return
    if not isinstance(sort, list):
        raise QueryError("sort must be an array")
    for item in sort:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise QueryError('each sort entry needs a string "key"')
        if not isinstance(item.get("order") or "", str):
            raise QueryError(f"sort order must be a string, got {item['order']!r}")


def _check_page(page: object) -> None:
    if page is None:
        return
    if not isinstance(page, Mapping):
        raise QueryError("page must be a JSON object")
    limit = page.get("limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise QueryError(f"page.limit must be an integer, got {limit!r}")
    token = page.get("token", "") or ""
    if not isinstance(token, str):
        raise QueryError(f"page.token must be a string, got {token!r}")


def build_query(query: Mapping[str, object], table: str, etag_column: str = "xmin") -> SqlQuery:
    """The SELECT for a query ``parse_query`` accepted; QueryError for what only the store
    refuses (a string compared by order, an empty IN, a sort order or page token it cannot
    read)."""
    builder = _Builder()
    sql = f"SELECT key, value::text, {etag_column}::text AS etag FROM {table}"
    filters = query.get("filter")
    if filters:
        assert isinstance(filters, Mapping)
        sql += " WHERE " + builder.filter(filters)
    sql += _order_by(query.get("sort"))
    page = query.get("page")
    limit = page.get("limit", 0) if isinstance(page, Mapping) else 0
    token = (page.get("token", "") or "") if isinstance(page, Mapping) else ""
    assert isinstance(limit, int) and isinstance(token, str)
    if limit > 0:
        sql += f" LIMIT {limit}"
    skip = 0
    if token:
        if not _GO_INT.fullmatch(token):
            raise QueryError(f'strconv.ParseInt: parsing "{token}": invalid syntax')
        skip = int(token)
        sql += f" OFFSET {skip}"
    return SqlQuery(sql, builder.params, max(limit, 0), skip)


def _order_by(sort: object) -> str:
    if not sort:
        return ""
    assert isinstance(sort, list)
    clauses: list[str] = []
    for item in sort:
        order = str(item.get("order") or "")
        if order.upper() not in ("", "ASC", "DESC"):
            raise QueryError(f"sort order must be ASC or DESC, got {order!r}")
        clause = field_path(str(item["key"]))
        clauses.append(f"{clause} {order.upper()}" if order else clause)
    return " ORDER BY " + ", ".join(clauses)
