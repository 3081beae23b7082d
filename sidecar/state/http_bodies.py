"""daprd's HTTP state bodies, typed as daprd types them, with the Go libraries' refusals.

daprd decodes a save body with Go's encoding/json into contrib's ``[]state.SetRequest``, a bulk
get into ``BulkGetRequest`` and a transaction into ``stateTransactionRequestBody``, whose
operations it then decodes with mapstructure (no weak typing) into ``state.SetRequest`` or
``state.DeleteRequest`` (dapr pkg/api/http/http.go onPostState, onBulkGetState,
onPostStateTransaction). A value of another JSON type than the Go field's (a number as a metadata
value or an etag) is refused with those libraries' messages, which this module words as they do:
encoding/json reports the first mismatch in document order, mapstructure all of them, sorted.
Field names match as in Go: exactly, else regardless of case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar import go_scanner
from sidecar.gofmt import go_format
from sidecar.gojson import folded

_INT64 = range(-(2**63), 2**63)


class BodyError(ValueError):
    """The body does not fit daprd's Go types; ``str()`` is the Go library's message."""


@dataclass(frozen=True, slots=True)
class StateItem:
    """One save item or transaction operation's request, with Go's zero values."""

    key: str = ""
    value: Any = None
    etag: str | None = None  #: nil and "" are both "no etag" for the stores
    metadata: dict[str, str] | None = None  #: None is Go's nil map
    concurrency: str = ""
    consistency: str = ""


@dataclass(frozen=True, slots=True)
class BulkGet:
    keys: list[str]
    parallelism: int


@dataclass(frozen=True, slots=True)
class Operation:
    operation: str
    request: Any  #: decoded into an item by ``operation_request``


@dataclass(frozen=True, slots=True)
class Transaction:
    operations: list[Operation]
    metadata: dict[str, str] | None


# --- encoding/json ---------------------------------------------------------------------------


def _json_kind(value: Any) -> str:
    """What encoding/json's UnmarshalTypeError calls a JSON value."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def _type_error(value: Any, go_type: str, struct: str = "", path: str = "") -> BodyError:
    """encoding/json's UnmarshalTypeError text (Go 1.24+: the field path from the root)."""
    what = _json_kind(value)
    if struct or path:
        where = f"Go struct field {struct}.{path}"
    else:
        where = "Go value"
    return BodyError(f"json: cannot unmarshal {what} into {where} of type {go_type}")


def _fields(obj: Mapping[str, Any], names: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """(field, value) for each key of ``obj`` naming a struct field, in document order.

    encoding/json takes the field of that exact name, else one whose name folds the same.
    """
    by_fold = {folded(n): n for n in names}
    for key, value in obj.items():
        name = key if key in names else by_fold.get(folded(key))
        if name is not None:
            yield name, value


def _json_string(value: Any, struct: str, path: str) -> str | None:
    """A string field; None when the JSON is null (Go leaves the field as it was)."""
    if value is None or isinstance(value, str):
        return value
    raise _type_error(value, "string", struct, path)


def _json_string_map(value: Any, struct: str, path: str) -> dict[str, str] | None:
    """A map[string]string field: a null value is "" (Go stores the zero value)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _type_error(value, "map[string]string", struct, path)
    out: dict[str, str] = {}
    for key, item in value.items():
        out[key] = _json_string(item, struct, path) or ""
    return out


def save_items(body: Any) -> list[StateItem]:
    """``json.Decoder.Decode(&[]state.SetRequest)``: null is no item, a null item a zero one."""
    if body is None:
        return []
    if not isinstance(body, list):
        raise _type_error(body, "[]state.SetRequest")
    return [_set_request(element) for element in body]


_SET_FIELDS = ("key", "value", "etag", "metadata", "options", "contentType")
_OPTION_FIELDS = ("Concurrency", "Consistency")  #: SetStateOption has no json tags


def _set_request(element: Any) -> StateItem:
    if element is None:
        return StateItem()
    if not isinstance(element, dict):
        raise _type_error(element, "state.SetRequest")
    fields: dict[str, Any] = {}
    for name, value in _fields(element, _SET_FIELDS):
        if name == "value":
            fields["value"] = value
        elif name == "metadata":
            fields["metadata"] = _json_string_map(value, "SetRequest", name)
        elif name == "options":
            fields.update(_json_options(value))
        elif name == "etag":
            fields["etag"] = _json_string(value, "SetRequest", name)
        else:
            text = _json_string(value, "SetRequest", name)
            if name == "key" and text is not None:
                fields["key"] = text
    return StateItem(**fields)


def _json_options(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _type_error(value, "state.SetStateOption", "SetRequest", "options")
    out: dict[str, str] = {}
    for name, item in _fields(value, _OPTION_FIELDS):
        text = _json_string(item, "SetStateOption", f"options.{name}")
        if text is not None:
            out[name.lower()] = text
    return out


def bulk_get(body: Any, raw: bytes) -> BulkGet:
    """``json.Decoder.Decode(&BulkGetRequest{})``; ``raw`` gives a refused number's literal."""
    if body is None:
        return BulkGet([], 0)
    if not isinstance(body, dict):
        raise _type_error(body, "http.BulkGetRequest")
    keys: list[str] = []
    parallelism = 0
    for name, value in _fields(body, ("metadata", "keys", "parallelism")):
        if name == "metadata":
            _json_string_map(value, "BulkGetRequest", name)
        elif name == "keys":
            if value is not None and not isinstance(value, list):
                raise _type_error(value, "[]string", "BulkGetRequest", name)
            keys = [_json_string(k, "BulkGetRequest", name) or "" for k in value or []]
        elif value is not None:
            parallelism = _json_int(value, raw)
    return BulkGet(keys, parallelism)


def _json_int(value: Any, raw: bytes) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value in _INT64:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        literal = _parallelism_literal(raw) or str(value)
        raise BodyError(
            f"json: cannot unmarshal number {literal} into Go struct field "
            "BulkGetRequest.parallelism of type int"
        )
    raise _type_error(value, "int", "BulkGetRequest", "parallelism")


class _Literal(str):
    """A JSON number as written."""


def _parallelism_literal(raw: bytes) -> str:
    """The parallelism number as the body spells it (Go quotes the literal, "1.50")."""
    first = go_scanner.scan(raw, whole=False).end or len(raw)  # as Go's decoder read it
    try:
        body = json.loads(raw[:first], parse_float=_Literal, parse_int=_Literal)
    except ValueError:
        return ""
    found = ""
    for _, value in _fields(body, ("parallelism",)):
        found = value if isinstance(value, _Literal) else found
    return found


def transaction(body: Any) -> Transaction:
    """``json.Decoder.Decode(&stateTransactionRequestBody{})``."""
    if body is None:
        return Transaction([], None)
    if not isinstance(body, dict):
        raise _type_error(body, "http.stateTransactionRequestBody")
    operations: list[Operation] = []
    metadata: dict[str, str] | None = None
    for name, value in _fields(body, ("operations", "metadata")):
        if name == "metadata":
            metadata = _json_string_map(value, "stateTransactionRequestBody", name)
        elif value is None:
            operations = []
        elif isinstance(value, list):
            operations = [_operation(element) for element in value]
        else:
            go_type = "[]http.stateTransactionRequestBodyOperation"
            raise _type_error(value, go_type, "stateTransactionRequestBody", name)
    return Transaction(operations, metadata)


def _operation(element: Any) -> Operation:
    if element is None:
        return Operation("", None)
    if not isinstance(element, dict):
        go_type = "http.stateTransactionRequestBodyOperation"
        raise _type_error(element, go_type, "stateTransactionRequestBody", "operations")
    kind, request = "", None
    for name, value in _fields(element, ("operation", "request")):
        if name == "request":
            request = value
        else:
            struct = "stateTransactionRequestBodyOperation"
            text = _json_string(value, struct, "operations.operation")
            kind = kind if text is None else text
    return Operation(kind, request)


# --- mapstructure ----------------------------------------------------------------------------


def _go_type(value: Any) -> str:
    """The Go type encoding/json gives a JSON value decoded into ``any``."""
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "float64"


def _go_kind(value: Any) -> str:
    """reflect.Kind of such a value, as mapstructure's "expected a map" errors name it."""
    if isinstance(value, list):
        return "slice"
    if isinstance(value, dict):
        return "map"
    return _go_type(value)


def _ms_string(name: str, value: Any, errors: list[str]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    errors.append(
        f"'{name}' expected type 'string', got unconvertible type '{_go_type(value)}', "
        f"value: '{go_format(value)}'"
    )
    return None


def _ms_fields(obj: dict[str, Any], names: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """mapstructure's field lookup: the exact Go name, else any key equal to it ignoring case."""
    for name in names:
        if name in obj:
            yield name, obj[name]
            continue
        for key, value in obj.items():
            if key.lower() == name.lower():
                yield name, value
                break


#: The Go field names of state.DeleteRequest and state.SetRequest (no mapstructure tags).
_DELETE_NAMES: tuple[str, ...] = ("Key", "ETag", "Metadata", "Options")
_SET_NAMES: tuple[str, ...] = ("Key", "Value", "ETag", "Metadata", "Options", "ContentType")


def operation_request(request: Any, *, delete: bool) -> StateItem:
    """``mapstructure.Decode(request, &state.SetRequest{})`` (or DeleteRequest)."""
    if request is None:
        return StateItem()
    if not isinstance(request, dict):
        raise BodyError(f"'' expected a map, got '{_go_kind(request)}'")
    names = _DELETE_NAMES if delete else _SET_NAMES
    errors: list[str] = []
    fields: dict[str, Any] = {}
    for name, value in _ms_fields(request, names):
        if name == "Value":
            fields["value"] = value
        elif name == "Metadata":
            fields["metadata"] = _ms_string_map(value, errors)
        elif name == "Options":
            fields.update(_ms_options(value, errors))
        else:
            text = _ms_string(name, value, errors)
            if name == "Key" and text is not None:
                fields["key"] = text
            elif name == "ETag":
                fields["etag"] = text
    if errors:
        points = sorted(f"* {e}" for e in errors)
        raise BodyError(f"{len(errors)} error(s) decoding:\n\n" + "\n".join(points))
    return StateItem(**fields)


def _ms_string_map(value: Any, errors: list[str]) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(f"'Metadata' expected a map, got '{_go_kind(value)}'")
        return None
    out: dict[str, str] = {}
    for key, item in value.items():
        text = _ms_string(f"Metadata[{key}]", item, errors)
        out[key] = text or ""
    return out


def _ms_options(value: Any, errors: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(f"'Options' expected a map, got '{_go_kind(value)}'")
        return {}
    out: dict[str, str] = {}
    for name, item in _ms_fields(value, _OPTION_FIELDS):
        text = _ms_string(f"Options.{name}", item, errors)
        if text is not None:
            out[name.lower()] = text
    return out
