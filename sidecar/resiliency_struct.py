"""A Resiliency document decoded into daprd's Go type, or the error Go gives for it.

daprd reads a Resiliency file with sigs.k8s.io/yaml into ``resiliencyV1alpha.Resiliency``
(pkg/apis/resiliency/v1alpha1/types.go): the YAML becomes JSON, a number or boolean becoming a
string where the field is one, then encoding/json decodes it. A field of the wrong type fails
the whole document, with the first such error in the JSON's (sorted) key order; unknown fields
are ignored, field names match regardless of case. Only the fields daprd's type has survive:
a retry policy keeps ``policy``, ``duration``, ``maxInterval``, ``maxRetries`` and ``matching``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, NoReturn

from sidecar.go_values import encoding_json
from sidecar.gojson import folded

_MAX_INT64 = (1 << 63) - 1


class StructError(ValueError):
    """The document does not fit daprd's type; the message is the one daprd logs."""


@dataclass(frozen=True)
class _Struct:
    name: str
    fields: Mapping[str, Any]
    package: str = "v1alpha1"

    @property
    def go_type(self) -> str:
        return f"{self.package}.{self.name}"


@dataclass(frozen=True)
class _Map:
    elem: Any

    @property
    def go_type(self) -> str:
        return f"map[string]{_go_type(self.elem)}"


@dataclass(frozen=True)
class _Slice:
    elem: Any

    @property
    def go_type(self) -> str:
        return f"[]{_go_type(self.elem)}"


_STRING, _INT, _INT64 = "string", "int", "int64"
_NAMES = _Struct("PolicyNames", {"timeout": _STRING, "retry": _STRING, "circuitBreaker": _STRING})
_RETRY_MATCHING = _Struct("RetryMatching", {"httpStatusCodes": _STRING, "gRPCStatusCodes": _STRING})
_RETRY = _Struct(
    "Retry",
    {
        "policy": _STRING,
        "duration": _STRING,
        "maxInterval": _STRING,
        "maxRetries": _INT,  # *int: null leaves it nil
        "matching": _RETRY_MATCHING,  # *RetryMatching
    },
)
_CIRCUIT_BREAKER = _Struct(
    "CircuitBreaker",
    {"maxRequests": _INT, "interval": _STRING, "timeout": _STRING, "trip": _STRING},
)
_ENDPOINT_NAMES = _Struct("EndpointPolicyNames", {**_NAMES.fields, "circuitBreakerCacheSize": _INT})
_ACTOR_NAMES = _Struct(
    "ActorPolicyNames",
    {**_NAMES.fields, "circuitBreakerScope": _STRING, "circuitBreakerCacheSize": _INT},
)
_SPEC = _Struct(
    "ResiliencySpec",
    {
        "policies": _Struct(
            "Policies",
            {
                "timeouts": _Map(_STRING),
                "retries": _Map(_RETRY),
                "circuitBreakers": _Map(_CIRCUIT_BREAKER),
            },
        ),
        "targets": _Struct(
            "Targets",
            {
                "apps": _Map(_ENDPOINT_NAMES),
                "actors": _Map(_ACTOR_NAMES),
                "components": _Map(
                    _Struct("ComponentPolicyNames", {"inbound": _NAMES, "outbound": _NAMES})
                ),
            },
        ),
    },
)
#: ObjectMeta: only the fields a Resiliency document plausibly carries are checked.
_OBJECT_META = _Struct(
    "ObjectMeta",
    {
        "name": _STRING,
        "generateName": _STRING,
        "namespace": _STRING,
        "selfLink": _STRING,
        "uid": _STRING,
        "resourceVersion": _STRING,
        "generation": _INT64,
        "labels": _Map(_STRING),
        "annotations": _Map(_STRING),
        "finalizers": _Slice(_STRING),
    },
    package="v1",
)
_RESILIENCY = _Struct(
    "Resiliency",
    {"metadata": _OBJECT_META, "spec": _SPEC, "scopes": _Slice(_STRING)},
)
#: TypeMeta is embedded: its fields sit at the top, and Go names them TypeMeta.<field>.
_TYPE_META = ("apiVersion", "kind")


@dataclass(frozen=True)
class Decoded:
    """What daprd's type keeps of a document; absent fields are left out."""

    name: str
    scopes: tuple[str, ...]
    spec: Mapping[str, Any]
    #: Where under ``spec`` the document has a field daprd's type lacks (ignored by daprd).
    ignored: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class _Where:
    struct: str = ""  #: the innermost Go struct decoding (Go's errorContext.Struct)
    fields: tuple[str, ...] = ()  #: the JSON field names down to here (map keys not included)
    shown: tuple[str, ...] = ()  #: the same path with map keys, for the sidecar's warnings


def decode_struct(document: Mapping[str, Any]) -> Decoded:
    """The document as daprd's Go type holds it; StructError as daprd words its failure."""
    for name in _TYPE_META:  # strings in daprd's type: only a map or a list can fail
        value = document.get(name)
        if isinstance(value, dict | list):
            _fail(_json_kind(value), _STRING, _Where("Resiliency", ("TypeMeta", name)))
    ignored: list[str] = []
    decoded = _value(document, _RESILIENCY, _Where(), ignored) or {}
    metadata = decoded.get("metadata") or {}
    return Decoded(
        name=metadata.get("name") or "",
        scopes=tuple(decoded.get("scopes") or ()),
        spec=decoded.get("spec") or {},
        ignored=tuple(ignored),
    )


def _go_type(kind: Any) -> str:
    return kind if isinstance(kind, str) else str(kind.go_type)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _fail(kind: str, target: Any, where: _Where) -> NoReturn:
    into = (
        f"Go struct field {where.struct}.{'.'.join(where.fields)}" if where.struct else "Go value"
    )
    raise StructError(
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
        f"{kind} into {into} of type {_go_type(target)}"
    )


def _value(value: Any, kind: Any, where: _Where, ignored: list[str]) -> Any:
    """``value`` decoded into ``kind``; None where a JSON null leaves the Go value zero."""
    if value is None:
        return None
    if kind == _STRING:
        if isinstance(value, dict | list):
            _fail(_json_kind(value), kind, where)
        return _yaml_string(value)
    if kind in (_INT, _INT64):
        return _int(value, kind, where)
    if isinstance(kind, _Slice):
        if not isinstance(value, list):
            _fail(_json_kind(value), kind, where)
        return [_value(item, kind.elem, where, ignored) for item in value]
    if not isinstance(value, dict):
        _fail(_json_kind(value), kind, where)
    # sigs.k8s.io/yaml hands encoding/json a Go map: its keys come sorted.
    keys = sorted(((_yaml_string(raw), raw) for raw in value), key=lambda pair: pair[0])
    if isinstance(kind, _Map):
        return {
            key: _value(value[raw], kind.elem, replace(where, shown=(*where.shown, key)), ignored)
            for key, raw in keys
        }
    out: dict[str, Any] = {}
    for key, raw in keys:
        name = _field(kind, key)
        if name is None:
            if where.shown[:1] == ("spec",):
                ignored.append(".".join((*where.shown, key)))
            continue
        inner = _Where(kind.name, (*where.fields, name), (*where.shown, name))
        decoded = _value(value[raw], kind.fields[name], inner, ignored)
        if decoded is not None or name not in out:
            out[name] = decoded
    return out


def _field(kind: _Struct, key: str) -> str | None:
    """The field encoding/json decodes ``key`` into: its exact name, else one equal but for
    case."""
    if key in kind.fields:
        return key
    wanted = folded(key)
    return next((name for name in kind.fields if folded(name) == wanted), None)


def _int(value: Any, kind: str, where: _Where) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(_json_kind(value), kind, where)
    if isinstance(value, float):
        text = encoding_json(value).decode()  # as json.Marshal wrote it for encoding/json to read
        if not value.is_integer() or "e" in text:
            _fail(f"number {text}", kind, where)
    number = int(value)
    if not -_MAX_INT64 - 1 <= number <= _MAX_INT64:
        _fail(f"number {number}", kind, where)
    return number


def _yaml_string(value: Any) -> str:
    """A YAML scalar as sigs.k8s.io/yaml turns it into a JSON string (or a map key)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float32_g(value)
    return str(value)


def _float32_g(number: float) -> str:
    """Go's strconv.FormatFloat(f, 'g', -1, 32): the fewest digits that read back as the
    same float32, in exponent form when the exponent is below -4 or from 6 on."""
    if number != number:
        return "NaN"
    try:
        single = struct.unpack("f", struct.pack("f", number))[0]
    except OverflowError:
        single = number * float("inf")
    if single in (float("inf"), float("-inf")):
        return "+Inf" if single > 0 else "-Inf"
    if single == 0:
        return "-0" if str(single).startswith("-") else "0"
    for count in range(1, 10):
        text = f"{single:.{count - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == single:
            break
    mantissa, _, exponent_text = text.partition("e")
    exponent = int(exponent_text)
    if exponent < -4 or exponent >= 6:
        sign = "-" if exponent < 0 else "+"
        return f"{mantissa}e{sign}{abs(exponent):02d}"
    return format(Decimal(mantissa).scaleb(exponent).normalize(), "f")
