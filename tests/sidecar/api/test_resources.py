"""Loading the resources folder: kinds, templates, scopes, and errors naming file and field."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from sidecar.components import SecretRef
from sidecar.loading import SidecarStartError, create_components
from sidecar.resources import (
    ResourceError,
    TemplateContext,
    env_ref_allowed,
    load_resources,
    parse_duration,
    parse_resources,
    split_documents,
)

CTX = TemplateContext(
    app_id="myapp", namespace="ns", pod_name="pod-1", env={"REDIS_PW": "from-env"}
)

COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: state.redis
  version: v1
  initTimeout: 1m30s
  ignoreErrors: true
  metadata:
  - name: consumerID
    value: "{{uuid}}-{{appID}}"
  - name: group
    value: "{{namespace}}/{{podName}}"
  - name: redisPassword
    envRef: REDIS_PW
  - name: maxLen
    value: 10
  - name: enabled
    value: true
{scopes}"""


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def test_component_fields_and_templates() -> None:
    parsed = parse_resources(COMPONENT.format(name="s", scopes=""), "c.yaml", CTX)
    (comp,) = parsed.components
    assert comp.type == "state.redis"
    assert comp.init_timeout == 90.0
    assert comp.ignore_errors is True
    uuid_part, app = comp.metadata["consumerID"].rsplit("-", 1)
    assert app == "myapp"
    uuid.UUID(uuid_part)
    assert comp.metadata["group"] == "ns.myapp/pod-1"
    assert comp.metadata["redisPassword"] == "from-env"
    assert comp.metadata["maxLen"] == "10"
    assert comp.metadata["enabled"] == "true"
    assert comp.namespace_scoped  # "group" names {namespace} (daprd's ContainsNamespace)


def test_only_a_value_written_with_namespace_makes_a_component_namespaced() -> None:
    env = {"NS_TEXT": "{namespace}"}
    ctx = dataclasses.replace(CTX, env=env)
    text = COMPONENT.format(name="s", scopes="").replace(
        '    value: "{namespace}/{podName}"', "    envRef: NS_TEXT"
    )
    (comp,) = parse_resources(text, "c.yaml", ctx).components
    assert comp.metadata["group"] == "{namespace}"  # an env value is not a template
    assert not comp.namespace_scoped


async def test_pod_name_unset_fails_the_component_as_daprd_does() -> None:
    """Only Kubernetes sets POD_NAME; daprd then fails the component's init, which
    ignoreErrors may skip."""
    no_pod = TemplateContext(app_id="myapp", namespace="ns", env={"REDIS_PW": "x"})
    (comp,) = parse_resources(COMPONENT.format(name="s", scopes=""), "c.yaml", no_pod).components
    assert comp.unresolved == "group"
    assert comp.ignore_errors is True
    assert not (await create_components((comp,), "myapp", {})).stores
    strict = dataclasses.replace(comp, ignore_errors=False)
    with pytest.raises(SidecarStartError) as raised:
        await create_components((strict,), "myapp", {})
    assert (
        "failed to parse metadata: property group refers to {podName} but podName is not set"
        in (str(raised.value))
    )


def test_uuid_is_fresh_per_occurrence() -> None:
    assert CTX.render("{uuid}") != CTX.render("{uuid}")
    first, second = CTX.render("{uuid}|{uuid}").split("|")
    assert first != second


def test_folder_order_scopes_subfolders_and_kinds(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", COMPONENT.format(name="second", scopes=""))
    write(
        tmp_path,
        "a.yml",
        COMPONENT.format(name="first", scopes="")
        + "\n---\n"
        + COMPONENT.format(name="other-app-only", scopes="scopes: [other]\n")
        + "\n---\napiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: cfg\n",
    )
    write(tmp_path, "notes.txt", "not yaml: [")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "c.yaml", COMPONENT.format(name="nested", scopes=""))
    loaded = load_resources([tmp_path], CTX)
    assert [c.name for c in loaded.components] == ["first", "second"]


def test_yaml_files_in_any_letter_case_and_what_is_not_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """dapr/kit's IsYaml lowercases the extension; daprd's Resiliency loader names every other
    file of the folder as not loaded."""
    write(tmp_path, "Upper.YAML", COMPONENT.format(name="upper", scopes=""))
    write(tmp_path, "mixed.Yml", COMPONENT.format(name="mixed", scopes=""))
    write(tmp_path, "secrets.json", "{}")
    write(tmp_path, "yaml", COMPONENT.format(name="no-extension", scopes=""))
    caplog.set_level("WARNING")
    loaded = load_resources([tmp_path], CTX)
    assert sorted(c.name for c in loaded.components) == ["mixed", "upper"]
    assert sorted(r.getMessage() for r in caplog.records) == [
        "A non-YAML resiliency file secrets.json was detected, it will not be loaded",
        "A non-YAML resiliency file yaml was detected, it will not be loaded",
    ]


def test_subscriptions_v1_v2_and_resiliency() -> None:
    text = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: jobs
spec:
  pubsubname: pubsub
  topic: job-events
  routes:
    rules:
    - match: event.type == "job.completed"
      path: /done
    default: /other
  deadLetterTopic: dead
  bulkSubscribe:
    enabled: false
scopes: [myapp]
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: old
spec:
  pubsubname: pubsub
  topic: legacy
  route: /legacy
  metadata:
    rawPayload: "true"
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: retry
spec:
  policies: {}
"""
    parsed = parse_resources(text, "subs.yaml", CTX)
    v2, v1 = parsed.subscriptions
    assert [(r.match, r.path) for r in v2.rules] == [('event.type == "job.completed"', "/done")]
    assert v2.default_path == "/other"
    assert v2.dead_letter_topic == "dead"
    assert v2.scopes == ("myapp",)
    assert v1.default_path == "/legacy"
    assert v1.metadata == {"rawPayload": "true"}
    assert parsed.resiliencies[0].document()["metadata"] == {"name": "retry"}


@pytest.mark.parametrize(
    ("text", "field", "why"),
    [
        (
            "kind: Component\napiVersion: dapr.io/v1alpha1\nmetadata: {}\n",
            "metadata.name",
            "required",
        ),
        (
            "kind: Component\napiVersion: dapr.io/v1alpha1\nmetadata:\n  name: x\n"
            "spec:\n  type: [1]\n",
            "spec.type",
            "expected a string",
        ),
        (
            "kind: Component\napiVersion: dapr.io/v1alpha1\nmetadata:\n  name: x\nspec:\n"
            "  type: state.redis\n  metadata: {a: b}\n",
            "spec.metadata",
            "list",
        ),
        (
            "kind: Component\napiVersion: dapr.io/v1alpha1\nmetadata:\n  name: x\nspec:\n"
            "  type: state.redis\n  initTimeout: soon\n",
            "spec.initTimeout",
            "duration",
        ),
        (
            "kind: Component\napiVersion: dapr.io/v1alpha1\nmetadata:\n  name: x\nspec:\n"
            "  type: state.redis\n  metadata:\n  - name: p\n    secretKeyRef: {key: k}\n",
            "secretKeyRef.name",
            "is required",
        ),
    ],
)
def test_errors_name_file_field_and_why(text: str, field: str, why: str) -> None:
    with pytest.raises(ResourceError) as error:
        parse_resources(text, "bad.yaml", CTX)
    message = str(error.value)
    assert "bad.yaml" in message
    assert field in message
    assert why in message


def test_documents_split_as_daprd_splits_them() -> None:
    assert split_documents("a: 1\n---\nb: 2\n") == ["a: 1", "b: 2\n"]
    # The rest of a separator line is dropped; a file may start with one.
    assert split_documents("---\na: 1\n--- # next\nb: 2") == ["---\na: 1", "b: 2"]
    assert split_documents("a: 1\n---") == ["a: 1"]
    assert split_documents("a: |\n  x\n  ---\n") == ["a: |\n  x\n  ---\n"]  # indented


def test_unreadable_documents_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """daprd's loader warns of a document it cannot unmarshal and loads the file's others."""
    text = "\n---\n".join(
        [
            COMPONENT.format(name="before", scopes=""),
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: [oops\n",
            "- just\n- a list\n",
            COMPONENT.format(name="after", scopes=""),
        ]
    )
    with caplog.at_level("WARNING", logger="sidecar.resources"):
        parsed = parse_resources(text, "mixed.yaml", CTX)
    assert [c.name for c in parsed.components] == ["before", "after"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "mixed.yaml" in warning
    assert "line 26: invalid YAML" in warning  # where the stream ended, unclosed
    assert "from line 28: expected a mapping, got list" in warning


def test_duplicate_component_names(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", COMPONENT.format(name="same", scopes=""))
    write(tmp_path, "b.yaml", COMPONENT.format(name="same", scopes=""))
    with pytest.raises(ResourceError, match="duplicate component name 'same'"):
        load_resources([tmp_path], CTX)


def test_go_durations() -> None:
    assert parse_duration("5s") == 5
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1h2m3s") == 3723
    assert parse_duration("10") == 10
    with pytest.raises(ValueError):
        parse_duration("5 s")


def test_secret_refs_auth_and_env_refs_as_daprd_reads_them() -> None:
    text = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pg
spec:
  type: state.postgresql
  metadata:
  - name: connectionString
    secretKeyRef: {name: pg, key: dsn}
  - name: password
    secretKeyRef: {name: pgpass}
  - name: user
    value: given
    envRef: REDIS_PW
  - name: fromenv
    envRef: REDIS_PW
  - name: token
    envRef: DAPR_API_TOKEN
auth:
  secretStore: localsecrets
"""
    ctx = TemplateContext(app_id="a", env={"REDIS_PW": "pw", "DAPR_API_TOKEN": "t"})
    (pg,) = parse_resources(text, "pg.yaml", ctx).components
    assert pg.secret_store == "localsecrets"
    assert pg.secret_refs == {
        "connectionString": SecretRef("pg", "dsn"),
        "password": SecretRef("pgpass"),
    }
    assert pg.secret_refs["password"].field == "pgpass"  # no key: the secret's own name
    # A value wins over envRef; DAPR_* variables are never read.
    assert dict(pg.metadata) == {
        "connectionString": "",
        "password": "",
        "user": "given",
        "fromenv": "pw",
        "token": "",
    }
    assert env_ref_allowed("PGPASS", "")
    assert not env_ref_allowed("app_api_token", "")
    assert not env_ref_allowed("dapr_anything", "")
    assert env_ref_allowed("PGPASS", "OTHER PGPASS") and not env_ref_allowed("PGPASS", "OTHER")
