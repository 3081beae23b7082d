"""Resiliency documents read as daprd reads them: its Go type first, then dapr/kit's decoding of
each policy; what daprd cannot read is logged in its words and skipped, never fatal."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sidecar import resources
from sidecar.resiliency import Resiliency
from sidecar.resiliency_loading import load_resiliency as load_found
from sidecar.resources import TemplateContext, parse_resources

PATIENT = {"policy": "constant", "duration": "1s", "maxRetries": 9}


def document(spec: Any, name: str = "r", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": name},
        "spec": spec,
        **extra,
    }


def good(name: str = "good") -> dict[str, Any]:
    return document(
        {
            "policies": {"retries": {"patient": PATIENT}},
            "targets": {"components": {"pubsub": {"inbound": {"retry": "patient"}}}},
        },
        name,
    )


def load_resiliency(files: list[tuple[str, dict[str, Any]]], app_id: str) -> Resiliency:
    """The documents, each as the first one of the file named with it."""
    return load_found((resources.Resiliency(raw, file) for file, raw in files), app_id)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


MINE = {"timeouts": {"mine": "1s"}, "retries": {"mine": PATIENT}}
STRUCT_ERRORS = {
    "a string for an int": (
        {"policies": {**MINE, "retries": {"mine": PATIENT, "x": {"maxRetries": "5"}}}},
        "string into Go struct field Retry.spec.policies.retries.maxRetries of type int",
    ),
    "a fraction for an int": (
        {"policies": {**MINE, "retries": {"mine": PATIENT, "x": {"maxRetries": 1.5}}}},
        "number 1.5 into Go struct field Retry.spec.policies.retries.maxRetries of type int",
    ),
    "a list for a duration": (
        {"policies": {**MINE, "timeouts": {"mine": "1s", "t": ["1s"]}}},
        "array into Go struct field Policies.spec.policies.timeouts of type string",
    ),
    "a string for the spec": (
        "retry everything",
        "string into Go struct field Resiliency.spec of type v1alpha1.ResiliencySpec",
    ),
    "a list for the targets": (
        {"policies": MINE, "targets": ["orders"]},
        "array into Go struct field ResiliencySpec.spec.targets of type v1alpha1.Targets",
    ),
    "a list for a component's names": (
        {"policies": MINE, "targets": {"components": {"orders": {"inbound": ["mine"]}}}},
        "array into Go struct field ComponentPolicyNames.spec.targets.components.inbound "
        "of type v1alpha1.PolicyNames",
    ),
}


@pytest.mark.parametrize(("spec", "why"), STRUCT_ERRORS.values(), ids=STRUCT_ERRORS)
def test_a_document_that_does_not_fit_daprds_type_is_skipped_whole(
    spec: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    """LoadLocalResiliency: "Could not parse resiliency file", nothing of it applied, the
    other documents loaded."""
    resiliency = load_resiliency([("bad.yaml", document(spec)), ("good.yaml", good())], "app")
    assert "mine" not in resiliency.timeouts and "mine" not in resiliency.retries
    assert "orders" not in resiliency.components
    assert resiliency.pubsub_inbound("pubsub").retry is not None  # the good document's
    assert errors(caplog) == [
        "Could not parse resiliency file bad.yaml: error unmarshaling JSON: while decoding "
        f"JSON: json: cannot unmarshal {why}"
    ]


def test_scopes_that_are_not_a_list_fail_the_document_for_every_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = {**good(), "scopes": "app"}
    assert load_resiliency([("bad.yaml", bad)], "other").pubsub_inbound("pubsub").empty
    assert errors(caplog) == [
        "Could not parse resiliency file bad.yaml: error unmarshaling JSON: while decoding "
        "JSON: json: cannot unmarshal string into Go struct field Resiliency.scopes of type "
        "[]string"
    ]


def test_yaml_numbers_and_booleans_become_strings_where_daprds_type_has_strings() -> None:
    """sigs.k8s.io/yaml turns them into strings there; a bare integer duration is then
    milliseconds (parseDuration, dapr/kit's decoder), and a float a duration without unit."""
    text = """
kind: Resiliency
metadata: {name: 7}
spec:
  policies:
    timeouts: {quarter: 250, half: "500", none: 0}
    retries:
      quick: {duration: 100, maxInterval: 2000, maxRetries: 3.0}
  targets:
    apps: {1: {retry: quick, timeout: quarter}}
"""
    resiliency = load_resiliency([("r.yaml", yaml.safe_load(text))], "app")
    assert resiliency.timeouts == {"quarter": 0.25, "half": 0.5, "none": 0.0}
    quick = resiliency.retries["quick"]
    assert (quick.duration, quick.max_interval, quick.max_retries) == (0.1, 2.0, 3)
    assert resiliency.endpoint("1").timeout == 0.25


def test_a_document_without_a_name_loads() -> None:
    nameless = good()
    del nameless["metadata"]
    assert load_resiliency([("r.yaml", nameless)], "app").pubsub_inbound("pubsub").retry


def test_field_names_match_regardless_of_case() -> None:
    shouting = document(
        {"Policies": {"RETRIES": {"patient": PATIENT}}, "targets": {"apps": {"a": {"Retry": "x"}}}}
    )
    resiliency = load_resiliency([("r.yaml", shouting)], "app")
    assert "patient" in resiliency.retries and resiliency.apps["a"]["retry"] == "x"


def test_retry_fields_daprds_type_lacks_are_ignored_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """daprd's Retry type has policy, duration, maxInterval, maxRetries and matching only: an
    initialInterval or multiplier never reaches dapr/kit, which keeps its defaults."""
    spec = {
        "policies": {
            "retries": {"expo": {"policy": "exponential", "initialInterval": "5s", "multiplier": 3}}
        }
    }
    expo = load_resiliency([("r.yaml", document(spec))], "app").retries["expo"]
    assert (expo.initial_interval, expo.multiplier) == (0.5, 1.5)
    warned = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "spec.policies.retries.expo.initialInterval" in warned
    assert "spec.policies.retries.expo.multiplier" in warned


def test_a_bad_timeout_ends_its_document_and_keeps_its_name_as_no_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """decodePolicies assigns parseDuration's zero before it returns the error: the name is
    defined, as no timeout, and shadows a lower default (DefaultTimeoutPolicy here)."""
    first = document({"policies": {"timeouts": {"DefaultTimeoutPolicy": "2s"}}}, "first")
    bad = document(
        {
            "policies": {
                "timeouts": {"DefaultAppTimeoutPolicy": "soon"},
                "retries": {"patient": PATIENT},
            },
            "targets": {"apps": {"orders": {"retry": "patient"}}},
        },
        "bad",
    )
    resiliency = load_resiliency([("a.yaml", first), ("b.yaml", bad)], "app")
    assert resiliency.timeouts == {"DefaultTimeoutPolicy": 2.0, "DefaultAppTimeoutPolicy": 0.0}
    assert resiliency.endpoint("anyone").timeout is None
    assert resiliency.retries == {} and resiliency.apps == {}
    assert errors(caplog) == [
        'Could not read resiliency policy bad: invalid duration "DefaultAppTimeoutPolicy", '
        'soon: time: invalid duration "soon"'
    ]


def test_a_bad_circuit_breaker_is_worded_as_daprd_words_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """decodePolicies calls a circuit breaker's decoding error a retry configuration's."""
    spec = {
        "policies": {"circuitBreakers": {"cb": {"maxRequests": -1, "interval": "5x"}}},
        "targets": {"apps": {"orders": {"circuitBreaker": "cb"}}},
    }
    resiliency = load_resiliency([("r.yaml", document(spec))], "app")
    assert resiliency.breakers == {} and resiliency.apps == {}
    assert errors(caplog) == [
        'Could not read resiliency policy r: invalid retry configuration "cb": 2 error(s) '
        "decoding:\n\n* cannot parse 'maxRequests', -1.000000 overflows uint\n"
        "* error decoding 'interval': invalid duration \"5x\""
    ]


def test_bad_actor_targets_end_the_document_before_its_components(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = {
        "policies": {"retries": {"patient": PATIENT}},
        "targets": {
            "apps": {"orders": {"retry": "patient"}},
            "actors": {"cart": {"circuitBreaker": "cb"}},
            "components": {"pubsub": {"inbound": {"retry": "patient"}}},
        },
    }
    resiliency = load_resiliency([("r.yaml", document(spec))], "app")
    assert resiliency.endpoint("orders").retry is not None
    assert resiliency.pubsub_inbound("pubsub").empty is True
    assert "pubsub" not in resiliency.components
    assert errors(caplog) == [
        "Could not read resiliency policy r: actor circuit breakers must include scope"
    ]


def test_documents_are_loaded_in_order_and_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("INFO", logger="sidecar.resiliency_loading"):
        load_resiliency([("a.yaml", good("one")), ("b.yaml", good("two"))], "app")
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO"] == [
        "Loading Resiliency configuration: one",
        "Loading Resiliency configuration: two",
    ]


def test_only_the_first_document_of_a_file_is_loaded_and_the_rest_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """daprd's LoadLocalResiliency reads a file with yaml.Unmarshal: its first document only,
    without a word. The sidecar skips the others too, and names them."""
    second = good("two")
    second["spec"]["targets"] = {"components": {"orders": {"inbound": {"retry": "patient"}}}}
    text = "\n---\n".join(yaml.safe_dump(d) for d in (good("one"), second))
    found = parse_resources(text, "/some/where/resiliency.yaml", TemplateContext("app"))
    assert [(r.file, r.first) for r in found.resiliencies] == [
        ("resiliency.yaml", True),
        ("resiliency.yaml", False),
    ]
    resiliency = load_found(found.resiliencies, "app")
    assert resiliency.pubsub_inbound("pubsub").retry is not None  # the first document's
    assert resiliency.pubsub_inbound("orders").empty  # the second's: not loaded
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        "resiliency two is not the first document of resiliency.yaml and is not loaded: a "
        "resiliency file holds one document (put each Resiliency in a file of its own)"
    ]


def test_a_resiliency_of_any_api_version_is_read() -> None:
    """daprd's loadLocalResiliencyPath checks the kind only; the Go type has no version."""
    unversioned = good("unversioned")
    del unversioned["apiVersion"]
    for doc in ({**good("later"), "apiVersion": "dapr.io/v2"}, unversioned):
        found = parse_resources(yaml.safe_dump(doc), "r.yaml", TemplateContext("app"))
        assert load_found(found.resiliencies, "app").pubsub_inbound("pubsub").retry is not None
