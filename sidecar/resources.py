"""Load the resources folders (Component, Subscription, Resiliency YAML) the way daprd does.

Only top-level ``*.yaml``/``*.yml`` files (in any letter case, as dapr/kit's IsYaml) are read,
in name order, each possibly holding several documents. A document that is not YAML, or not a
mapping, is skipped with a warning naming its file, as daprd's loader skips what it cannot
unmarshal, and the file's other documents still count. Every other error names the file, the
field and why, and stops the sidecar (contract section 2).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sidecar.components import Component, RouteRule, SecretRef, Subscription
from sidecar.durations import parse_go_duration

logger = logging.getLogger(__name__)

_COMPONENT_VERSIONS = frozenset({"dapr.io/v1alpha1"})
_SUBSCRIPTION_VERSIONS = frozenset({"dapr.io/v1alpha1", "dapr.io/v2alpha1"})


class ResourceError(Exception):
    """A resource file cannot be used; the message names the file, the field and why."""

    def __init__(self, source: Path | str, field_name: str, problem: str) -> None:
        self.source = str(source)
        self.field_name = field_name
        self.problem = problem
        where = f"{source}: {field_name}" if field_name else f"{source}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Resiliency:
    """A ``kind: Resiliency`` document as written. sidecar.resiliency_loading decodes it, its
    scopes included, as daprd does: one it cannot read is logged and skipped, no error here."""

    raw: Mapping[str, Any]
    file: str = ""  #: the name of the file it is in, as daprd's log lines name it
    #: Whether it is its file's first document, the only one daprd's loader reads.
    first: bool = True

    def document(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(frozen=True, slots=True)
class Resources:
    components: tuple[Component, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    resiliencies: tuple[Resiliency, ...] = ()


class PodNameUnset(Exception):
    """A metadata value uses ``{podName}`` but POD_NAME is not set (only Kubernetes sets it)."""


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """Values for the ``{appID}``, ``{podName}``, ``{namespace}`` templates and ``envRef``."""

    app_id: str
    namespace: str = ""
    pod_name: str = ""
    env: Mapping[str, str] = field(default_factory=dict)

    def render(self, value: str) -> str:
        """The value with its templates resolved; PodNameUnset if it needs an unset POD_NAME."""
        if "{" not in value:
            return value
        if "{podName}" in value and not self.pod_name:
            raise PodNameUnset
        value = value.replace("{appID}", self.app_id)
        value = value.replace("{podName}", self.pod_name)
        value = value.replace("{namespace}", f"{self.namespace}.{self.app_id}")
        # Every occurrence gets its own uuid, as daprd does.
        while "{uuid}" in value:
            value = value.replace("{uuid}", str(uuid.uuid4()), 1)
        return value


def parse_duration(text: str) -> float:
    """A Go duration ("5s", "1m30s", "500ms") in seconds; a bare number means seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    return parse_go_duration(text)


def is_yaml(name: str) -> bool:
    """dapr/kit's strings.IsYaml: the extension (from the last dot) is .yaml or .yml, in any
    letter case."""
    dot = name.rfind(".")
    return dot >= 0 and name[dot:].lower() in (".yaml", ".yml")


def load_resources(paths: Sequence[Path], ctx: TemplateContext) -> Resources:
    """Every resource in ``paths`` that applies to ``ctx.app_id``; raises ResourceError."""
    components: list[Component] = []
    subscriptions: list[Subscription] = []
    resiliencies: list[Resiliency] = []
    for directory in paths:
        if not directory.is_dir():
            logger.warning("resources path %s does not exist or is not a folder", directory)
            continue
        for path in sorted(directory.iterdir()):
            if not path.is_file():
                continue
            if not is_yaml(path.name):
                # daprd's Resiliency loader, which reads the same folders, says so of each.
                logger.warning(
                    "A non-YAML resiliency file %s was detected, it will not be loaded", path.name
                )
                continue
            parsed = parse_resources(path.read_text(encoding="utf-8"), path, ctx)
            components.extend(parsed.components)
            subscriptions.extend(parsed.subscriptions)
            resiliencies.extend(parsed.resiliencies)
    _check_unique((c.name, str(c.source)) for c in components)
    return Resources(
        components=tuple(c for c in components if _in_scope(c.scopes, ctx.app_id)),
        subscriptions=tuple(s for s in subscriptions if _in_scope(s.scopes, ctx.app_id)),
        resiliencies=tuple(resiliencies),  # scoped once decoded (sidecar.resiliency_loading)
    )


def split_documents(text: str) -> list[str]:
    """A file's documents as daprd's loader splits them (``splitYamlDoc``): at each line that
    starts with ``---``, the rest of that line dropped."""
    documents = []
    while (at := text.find("\n---")) >= 0:
        documents.append(text[:at])
        line_end = text.find("\n", at + 4)
        if line_end < 0:
            return documents
        text = text[line_end + 1 :]
    documents.append(text)
    return documents


def _load_document(text: str, line: int) -> tuple[Any, str | None]:
    """(the document, None), or (None, why it cannot be read); ``line``: where it starts."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {line + mark.line}" if mark is not None else f"from line {line}"
        return None, f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}"
    if doc is not None and not isinstance(doc, dict):
        return None, f"from line {line}: expected a mapping, got {type(doc).__name__}"
    return doc, None


def parse_resources(text: str, source: Path | str, ctx: TemplateContext) -> Resources:
    """The resources in one file's text (pure apart from ``{uuid}`` and the warning for its
    unreadable documents); raises ResourceError."""
    documents = split_documents(text)
    components: list[Component] = []
    subscriptions: list[Subscription] = []
    resiliencies: list[Resiliency] = []
    unreadable: list[str] = []
    line = 1
    for index, raw in enumerate(documents):
        doc, problem = _load_document(raw, line)
        line += raw.count("\n") + 2  # the document, the newline before ---, the --- line
        if problem is not None:
            unreadable.append(problem)
            continue
        if doc is None:
            continue
        label = f"{source}" if len(documents) == 1 else f"{source} (document {index + 1})"
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if kind == "Component" and api_version in _COMPONENT_VERSIONS:
            components.append(_component(doc, label, source, ctx))
        elif kind == "Subscription" and api_version in _SUBSCRIPTION_VERSIONS:
            subscriptions.append(_subscription(doc, label, api_version == "dapr.io/v2alpha1"))
        elif kind == "Resiliency":  # daprd's local loader reads the kind, not the version
            resiliencies.append(Resiliency(doc, Path(str(source)).name, first=index == 0))
        else:
            logger.debug("%s: skipping kind %r apiVersion %r", label, kind, api_version)
    if unreadable:
        # daprd's words, once for the file (its loaders, one per kind, each say it).
        logger.warning(
            "daprd load resources error when parsing manifests yaml resource in %s: %s "
            "(skipped; the file's other documents are loaded)",
            source,
            "; ".join(unreadable),
        )
    return Resources(tuple(components), tuple(subscriptions), tuple(resiliencies))


def _component(
    doc: Mapping[str, Any], label: str, source: Path | str, ctx: TemplateContext
) -> Component:
    name = _name(doc, label)
    spec = _mapping(doc.get("spec"), label, "spec")
    type_ = _string(spec.get("type"), label, "spec.type", required=True)
    version = _string(spec.get("version"), label, "spec.version") or "v1"
    metadata: dict[str, str] = {}
    secret_refs: dict[str, SecretRef] = {}
    unresolved = ""
    namespace_scoped = False
    items = spec.get("metadata") or []
    if not isinstance(items, list):
        raise ResourceError(label, "spec.metadata", "expected a list of {name, value} items")
    for position, item in enumerate(items):
        where = f"spec.metadata[{position}]"
        if not isinstance(item, dict):
            raise ResourceError(label, where, "expected a mapping with name and value")
        key = _string(item.get("name"), label, f"{where}.name", required=True)
        namespace_scoped = namespace_scoped or "{namespace}" in str(item.get("value") or "")
        if key in metadata:
            raise ResourceError(label, f"{where}.name", f"metadata {key!r} is given twice")
        try:
            metadata[key] = _metadata_value(item, label, f"{where} ({key})", ctx)
        except PodNameUnset:
            metadata[key] = str(item.get("value"))
            unresolved = unresolved or key
        if "secretKeyRef" in item:
            secret_refs[key] = _secret_ref(item["secretKeyRef"], label, f"{where} ({key})")
    ignore_errors = spec.get("ignoreErrors", False)
    if not isinstance(ignore_errors, bool):
        raise ResourceError(
            label, "spec.ignoreErrors", f"expected true or false, got {ignore_errors!r}"
        )
    init_timeout = 5.0
    if spec.get("initTimeout") not in (None, ""):
        try:
            init_timeout = parse_duration(str(spec["initTimeout"]))
        except ValueError as exc:
            raise ResourceError(label, "spec.initTimeout", str(exc)) from None
    return Component(
        name=name,
        type=type_,
        version=version,
        metadata=metadata,
        scopes=_scopes(doc, label),
        ignore_errors=ignore_errors,
        init_timeout=init_timeout,
        source=Path(source),
        secret_refs=secret_refs,
        unresolved=unresolved,
        namespace_scoped=namespace_scoped,
        secret_store=_string(
            _mapping(doc.get("auth"), label, "auth").get("secretStore"), label, "auth.secretStore"
        ),
    )


def env_ref_allowed(name: str, allowlist: str) -> bool:
    """daprd's rule for ``envRef``: never ``APP_API_TOKEN`` or ``DAPR_*``, and only the
    variables ``DAPR_ENV_KEYS`` names when it is set (Kubernetes sets it)."""
    upper = name.upper()
    if not upper or upper == "APP_API_TOKEN" or upper.startswith("DAPR_") or " " in upper:
        return False
    return not allowlist or upper in allowlist.split(" ")


def _metadata_value(item: Mapping[str, Any], label: str, where: str, ctx: TemplateContext) -> str:
    value = item.get("value")
    if value is None and "envRef" in item:
        # daprd reads envRef only when there is no value.
        env_name = _string(item.get("envRef"), label, f"{where}.envRef", required=True)
        if env_ref_allowed(env_name, ctx.env.get("DAPR_ENV_KEYS", "")):
            return ctx.env.get(env_name, "")
        logger.warning("%s references an env variable that isn't allowed: %s", label, env_name)
        return ""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return ctx.render(str(value))
    raise ResourceError(label, f"{where}.value", f"expected a scalar, got {type(value).__name__}")


def _secret_ref(raw: Any, label: str, where: str) -> SecretRef:
    ref = _mapping(raw, label, f"{where}.secretKeyRef")
    return SecretRef(
        name=_string(ref.get("name"), label, f"{where}.secretKeyRef.name", required=True),
        key=_string(ref.get("key"), label, f"{where}.secretKeyRef.key"),
    )


def one_per_name(subscriptions: Sequence[Subscription]) -> tuple[Subscription, ...]:
    """What daprd's component store keeps of the declarative subscriptions (compstore
    AddDeclarativeSubscription): one per name, whatever its apiVersion; a later one of a name
    replaces the earlier one and takes its place at the end, with nothing logged."""
    kept: dict[str, Subscription] = {}
    for sub in subscriptions:
        kept.pop(sub.name, None)
        kept[sub.name] = sub
    return tuple(kept.values())


def _subscription(doc: Mapping[str, Any], label: str, v2: bool) -> Subscription:
    name = _name(doc, label)
    spec = _mapping(doc.get("spec"), label, "spec")
    pubsubname = _string(spec.get("pubsubname"), label, "spec.pubsubname", required=True)
    topic = _string(spec.get("topic"), label, "spec.topic", required=True)
    rules: list[RouteRule] = []
    default_path = ""
    if v2:
        routes = _mapping(spec.get("routes"), label, "spec.routes")
        default_path = _string(routes.get("default"), label, "spec.routes.default")
        raw_rules = routes.get("rules") or []
        if not isinstance(raw_rules, list):
            raise ResourceError(label, "spec.routes.rules", "expected a list of {match, path}")
        for position, rule in enumerate(raw_rules):
            where = f"spec.routes.rules[{position}]"
            if not isinstance(rule, dict):
                raise ResourceError(label, where, "expected a mapping with match and path")
            match = _string(rule.get("match"), label, f"{where}.match")
            path = _string(rule.get("path"), label, f"{where}.path", required=True)
            rules.append(RouteRule(match=match, path=path))
        if not rules and not default_path:
            raise ResourceError(label, "spec.routes", "needs rules or a default route")
    else:
        default_path = _string(spec.get("route"), label, "spec.route", required=True)
    metadata = _string_map(spec.get("metadata"), label, "spec.metadata")
    bulk = _mapping(spec.get("bulkSubscribe"), label, "spec.bulkSubscribe")
    enabled = bulk.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ResourceError(label, "spec.bulkSubscribe.enabled", "expected true or false")
    return Subscription(
        pubsubname=pubsubname,
        topic=topic,
        rules=tuple(rules),
        default_path=default_path,
        metadata=metadata,
        dead_letter_topic=_string(spec.get("deadLetterTopic"), label, "spec.deadLetterTopic"),
        scopes=_scopes(doc, label),
        bulk=enabled,
        bulk_max_messages=_int(bulk, "maxMessagesCount", label, "spec.bulkSubscribe"),
        bulk_max_await_ms=_int(bulk, "maxAwaitDurationMs", label, "spec.bulkSubscribe"),
        source=label,
        name=name,
    )


def _name(doc: Mapping[str, Any], label: str) -> str:
    meta = _mapping(doc.get("metadata"), label, "metadata")
    return _string(meta.get("name"), label, "metadata.name", required=True)


def _mapping(value: Any, label: str, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ResourceError(label, where, f"expected a mapping, got {type(value).__name__}")
    return value


def _string(value: Any, label: str, where: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise ResourceError(label, where, "is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ResourceError(label, where, f"expected a string, got {type(value).__name__}")
    return str(value)


def _int(parent: Mapping[str, Any], key: str, label: str, where: str) -> int:
    """An optional integer field (int32 in daprd's types); absent or null is 0."""
    value = parent.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise ResourceError(label, f"{where}.{key}", f"expected an integer, got {value!r}")
    return int(value)


def _string_map(value: Any, label: str, where: str) -> dict[str, str]:
    raw = _mapping(value, label, where)
    return {str(k): _string(v, label, f"{where}.{k}") for k, v in raw.items()}


def _scopes(doc: Mapping[str, Any], label: str) -> tuple[str, ...]:
    scopes = doc.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ResourceError(label, "scopes", "expected a list of app ids")
    return tuple(scopes)


def _in_scope(scopes: tuple[str, ...], app_id: str) -> bool:
    return not scopes or app_id in scopes


def _check_unique(names_and_sources: Iterable[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for name, source in names_and_sources:
        if name in seen:
            raise ResourceError(
                source,
                "metadata.name",
                f"duplicate component name {name!r} (first defined in {seen[name]})",
            )
        seen[name] = source
