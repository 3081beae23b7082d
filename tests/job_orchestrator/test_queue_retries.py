"""The project's components keep a failed queue delivery for another replica.

pubsub.redis (contrib 1.18) acknowledges a delivery that failed within processingTimeout, so
the orchestrator's answers that ask for a redelivery (RETRY: the job runs elsewhere, the replica
is stopping, the store is down) rely on resiliency.yaml retrying them past that timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from job_orchestrator.settings import Settings
from sidecar.pubsub.redis import parse_settings
from sidecar.resiliency import Resiliency, RetryPolicy
from sidecar.resiliency_loading import load_resiliency
from sidecar.resources import TemplateContext, load_resources
from tests.job_orchestrator.stack import write_resiliency

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "job-orchestrator"


def retried_for(policy: RetryPolicy) -> float:
    """Seconds a constant policy keeps retrying before it gives up (bounded by maxRetries)."""
    assert policy.policy == "constant" and policy.max_retries >= 0
    total, retry = 0.0, 0
    while (delay := policy.delay(retry, total)) is not None:
        total, retry = total + delay, retry + 1
    return total


def policies(folder: Path, app_id: str) -> Resiliency:
    """The Resiliency documents of ``folder`` for ``app_id``, read as daprd reads them."""
    resources = load_resources([folder], TemplateContext(app_id))
    return load_resiliency(resources.resiliencies, app_id)


def queue_policy(folder: Path) -> RetryPolicy:
    retry = policies(folder, APP_ID).pubsub_inbound("jobqueue").retry
    assert retry is not None, "no retry policy for jobqueue's deliveries"
    return retry


def test_queue_retries_outlast_the_processing_timeout() -> None:
    resources = load_resources([ROOT / "components"], TemplateContext(APP_ID))
    (queue,) = [c for c in resources.components if c.name == "jobqueue"]
    timeout = parse_settings(queue, APP_ID).processing_timeout
    assert timeout == Settings().lease_seconds  # as jobqueue.yaml says
    assert retried_for(queue_policy(ROOT / "components")) > timeout


def test_the_tests_scaled_policy_outlasts_their_shorter_leases(tmp_path: Path) -> None:
    for lease in (1.0, 3.0, 30.0):
        write_resiliency(tmp_path, lease)
        assert retried_for(queue_policy(tmp_path)) > lease


def test_every_apps_policy_is_read_as_daprd_reads_it(caplog: pytest.LogCaptureFixture) -> None:
    """daprd's local loader reads one document per resiliency file: a second Resiliency in a
    file (as microservice-x's once was) would leave that app without retries under daprd."""
    caplog.set_level("WARNING")
    assert policies(ROOT / "components", APP_ID).pubsub_inbound("jobqueue").retry is not None
    events = policies(ROOT / "components", "microservice-x").pubsub_inbound("pubsub").retry
    assert events is not None and events.max_retries == -1  # retried until it takes them
    assert [r.getMessage() for r in caplog.records] == []
