"""The Kubernetes manifests name the same app ids, ports and components as the local run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from job_orchestrator.settings import Settings
from sidecar.durations import parse_go_duration

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes" / "base"

#: Connection settings legitimately differ between a laptop and a cluster.
_ENDPOINT_FIELDS = {"redisHost", "connectionString"}


def _documents(paths: list[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc.get("kind") == kind}


def _local_run_apps() -> dict[str, dict[str, Any]]:
    template = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    return {app["appID"]: app for app in template["apps"]}


def test_every_app_of_the_run_template_is_deployed_with_the_same_id_and_port() -> None:
    deployments = _by_kind(_documents(sorted(K8S.glob("*.yaml"))), "Deployment")
    dapr_enabled = {
        name: dep["spec"]["template"]["metadata"]["annotations"]
        for name, dep in deployments.items()
        if dep["spec"]["template"]["metadata"].get("annotations", {}).get("dapr.io/enabled")
        == "true"
    }
    apps = _local_run_apps()
    deployed_ids = {ann["dapr.io/app-id"]: ann for ann in dapr_enabled.values()}
    assert set(deployed_ids) == set(apps)
    for app_id, app in apps.items():
        annotations = deployed_ids[app_id]
        assert annotations["dapr.io/app-port"] == str(app["appPort"])
        container = deployments[app_id]["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"][0]["containerPort"] == app["appPort"]
        assert container["command"] == app["command"]
        env = {item["name"]: item["value"] for item in container.get("env", [])}
        assert env.get("APP_PORT") == str(app["appPort"])


def test_sidecars_check_their_apps_health_locally_and_on_kubernetes() -> None:
    """A sidecar whose app is dead must stop its subscriptions, or the queue keeps handing
    that replica's jobs to it (tests/e2e/test_faults_replicas.py kills only an app)."""
    template = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    assert template["common"]["enableAppHealthCheck"] is True
    assert template["common"]["appHealthCheckPath"] == "/healthz"
    deployments = _by_kind(_documents(sorted(K8S.glob("*.yaml"))), "Deployment")
    for app_id in _local_run_apps():
        annotations = deployments[app_id]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["dapr.io/enable-app-health-check"] == "true"
        assert annotations["dapr.io/app-health-check-path"] == "/healthz"


def test_pods_are_ready_while_their_sidecar_answers_and_live_while_their_app_does() -> None:
    """Readiness on /readyz (the sidecar's outbound health), liveness on /healthz: a probe on
    the sidecar would restart the app for its sidecar's faults."""
    deployments = _by_kind(_documents(sorted(K8S.glob("*.yaml"))), "Deployment")
    for app_id in _local_run_apps():
        container = deployments[app_id]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_orchestrator_runs_several_replicas() -> None:
    deployments = _by_kind(_documents(sorted(K8S.glob("*.yaml"))), "Deployment")
    assert deployments["job-orchestrator"]["spec"]["replicas"] >= 2


def test_daprd_outlives_the_orchestrators_shutdown_grace() -> None:
    # Jobs still running at SIGTERM get the shutdown grace to finish, and their final
    # writes need the sidecar's API: daprd must block its own shutdown at least that long.
    pod = _by_kind(_documents([K8S / "job-orchestrator.yaml"]), "Deployment")["job-orchestrator"]
    annotations = pod["spec"]["template"]["metadata"]["annotations"]
    block = parse_go_duration(annotations["dapr.io/block-shutdown-duration"])
    graceful = int(annotations["dapr.io/graceful-shutdown-seconds"])
    assert block > Settings().shutdown_grace_seconds
    assert pod["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= block + graceful


def test_cluster_components_match_the_local_components() -> None:
    local = _documents(sorted((ROOT / "components").glob("*.yaml")))
    cluster = _documents(sorted(K8S.glob("*.yaml")))
    for kind in ("Component", "Subscription", "Resiliency"):
        local_kind = _by_kind(local, kind)
        cluster_kind = _by_kind(cluster, kind)
        assert set(local_kind) == set(cluster_kind), kind
        for name, doc in local_kind.items():
            other = cluster_kind[name]
            assert doc.get("scopes") == other.get("scopes"), name
            if kind == "Component":
                assert doc["spec"]["type"] == other["spec"]["type"], name
                mine = {m["name"]: m.get("value") for m in doc["spec"].get("metadata", [])}
                theirs = {m["name"]: m.get("value") for m in other["spec"].get("metadata", [])}
                assert set(mine) == set(theirs), name
                for key in set(mine) - _ENDPOINT_FIELDS:
                    assert mine[key] == theirs[key], (name, key)
            else:
                assert doc["spec"] == other["spec"], name


def test_cluster_alternatives_cover_the_local_alternatives() -> None:
    local = _by_kind(
        _documents(sorted((ROOT / "components" / "alternatives").glob("*.yaml"))), "Component"
    )
    cluster_docs = _documents(sorted((K8S.parent / "alternatives").glob("*.yaml")))
    cluster_types = {doc["spec"]["type"] for doc in cluster_docs if doc.get("kind") == "Component"}
    assert "state.postgresql" in cluster_types
    for doc in cluster_docs:
        assert doc["metadata"]["name"] in local


def test_the_queue_redelivers_any_job_the_cluster_can_run_at_once() -> None:
    """pubsub.redis (contrib 1.18) looks for messages to hand out again only among the group's
    first queueDepth pending ones: below replicas x concurrency, a lost replica's jobs would
    wait behind other replicas' long-running ones."""
    cluster = _documents(sorted(K8S.glob("*.yaml")))
    (queue,) = [
        d for d in cluster if d.get("kind") == "Component" and d["metadata"]["name"] == "jobqueue"
    ]
    settings = {
        m["name"]: int(m["value"])
        for m in queue["spec"]["metadata"]
        if m["name"] in ("queueDepth", "concurrency")
    }
    deployment = next(
        d
        for d in cluster
        if d.get("kind") == "Deployment" and d["metadata"]["name"] == "job-orchestrator"
    )
    assert settings["queueDepth"] >= deployment["spec"]["replicas"] * settings["concurrency"]
