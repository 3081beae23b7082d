"""The query filter -> SQL translation (postgresql v1 semantics), without a database."""

from __future__ import annotations

import json

import pytest

from sidecar.gofmt import go_format
from sidecar.state.query import QueryError, build_query, field_path, parse_query


def test_field_paths() -> None:
    assert field_path("status") == "value->>'status'"
    assert field_path("data.owner") == "value->'data'->>'owner'"
    assert field_path("it's") == "value->>'it''s'"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (25, "25"),
        (2.5, "2.5"),
        (1000000, "1e+06"),
        (123456, "123456"),
        (0.00001, "1e-05"),
        (-3, "-3"),
        (True, "true"),
        (None, "<nil>"),
        ("x", "x"),
        ([1, "a"], "[1 a]"),
    ],
)
def test_values_are_bound_as_go_formats_them(value: object, text: str) -> None:
    assert go_format(value) == text


def test_full_query() -> None:
    q = build_query(
        {
            "filter": {
                "AND": [
                    {"EQ": {"status": "done"}},
                    {"IN": {"data.owner": ["a", "b"]}},
                    {"OR": [{"GTE": {"n": 3}}, {"NEQ": {"n": 1}}]},
                ]
            },
            "sort": [{"key": "n", "order": "DESC"}, {"key": "k"}],
            "page": {"limit": 2, "token": "4"},
        },
        "state",
    )
    assert q.sql == (
        "SELECT key, value::text, xmin::text AS etag FROM state WHERE ("
        "value->>'status'=$1 AND (value->'data'->>'owner'=$2 OR value->'data'->>'owner'=$3)"
        " AND (value->>'n'>=$4 OR value->>'n'!=$5))"
        " ORDER BY value->>'n' DESC, value->>'k' LIMIT 2 OFFSET 4"
    )
    assert q.params == ["done", "a", "b", "3", "1"]
    assert q.next_token(2) == "6"


def test_no_filter_no_page() -> None:
    q = build_query({}, "s")
    assert q.sql == "SELECT key, value::text, xmin::text AS etag FROM s"
    assert q.next_token(10) == ""


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"filter": {"GT": {"n": "3"}}}, "string type not permitted"),
        ({"filter": {"IN": {"n": []}}}, "empty IN operator"),
        ({"page": {"limit": 1, "token": "x"}}, "invalid syntax"),
        ({"sort": [{"key": "a", "order": "SIDEWAYS"}]}, "ASC or DESC"),
    ],
)
def test_what_the_store_refuses(query: dict[str, object], message: str) -> None:
    """Refused when the store runs the query (contrib's postgres builder), after it parsed."""
    parsed = parse_query(json.dumps(query).encode())
    with pytest.raises(QueryError, match=message):
        build_query(parsed, "state")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "unexpected end of JSON input"),
        (b"{not json", "^invalid character 'n' looking for beginning of object key string$"),
        (b'{"filter": {}} x', "^invalid character 'x' after top-level value$"),  # Unmarshal
        (b"[]", "must be a JSON object"),
        (b'{"filter": []}', "filter must be a JSON object"),
        (b'{"filter": {"AND": [{"EQ": {"a": 1}}]}}', "at least two entries"),
        (b'{"filter": {"OR": {"EQ": {"a": 1}}}}', "OR filter must be an array"),
        (b'{"filter": {"LIKE": {"a": 1}}}', 'unsupported filter "LIKE"'),
        (b'{"filter": {"EQ": [1]}}', "EQ filter must be a map"),
        (b'{"filter": {"EQ": {"a": 1, "b": 2}}}', "single key/value pair"),
        (b'{"filter": {"EQ": {"a": 1}, "NEQ": {"b": 1}}}', "single element"),
        (b'{"filter": {"AND": [{"EQ": {"a": 1}}, 7]}}', "filter unit must be a map"),
        (b'{"filter": {"IN": {"a": 1}}}', "IN filter value must be an array"),
        (b'{"sort": {"key": "a"}}', "sort must be an array"),
        (b'{"sort": [{"key": 1}]}', 'needs a string "key"'),
        (b'{"page": {"limit": "2"}}', "page.limit must be an integer"),
        (b'{"page": {"token": 2}}', "page.token must be a string"),
    ],
)
def test_what_daprd_refuses_to_parse(text: bytes, message: str) -> None:
    """Refused while decoding into contrib's query.Query (ParseFilter), before any store."""
    with pytest.raises(QueryError, match=message):
        parse_query(text)


def test_null_is_an_empty_query() -> None:
    """Go's Unmarshal of null leaves the query as it was: empty."""
    assert parse_query(b"null") == {}
    assert build_query(parse_query(b"null"), "s").sql.endswith("FROM s")
