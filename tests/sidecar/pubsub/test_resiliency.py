"""Resiliency documents -> pub/sub inbound retry policy, with dapr/kit's defaults."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sidecar.durations import parse_go_duration
from sidecar.resiliency import ResiliencyError, RetryPolicy
from sidecar.resiliency_loading import parse_resiliency


def doc(spec: dict[str, Any], scopes: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "r"},
        "spec": spec,
    }
    if scopes is not None:
        out["scopes"] = scopes
    return out


SPEC = {
    "policies": {
        "retries": {
            "three": {"policy": "constant", "duration": "100ms", "maxRetries": 3},
            "expo": {"policy": "exponential", "maxInterval": "2s", "maxRetries": 5},
        },
        "timeouts": {"short": "1.5s"},
    },
    "targets": {"components": {"pubsub": {"inbound": {"retry": "three", "timeout": "short"}}}},
}


def test_no_documents_means_no_retry() -> None:
    policy = parse_resiliency([], "app").pubsub_inbound("pubsub")
    assert policy.retry is None and policy.timeout is None


def test_component_inbound_policy() -> None:
    policy = parse_resiliency([doc(SPEC)], "app").pubsub_inbound("pubsub")
    assert policy.retry == RetryPolicy(policy="constant", duration=0.1, max_retries=3)
    assert policy.timeout == 1.5
    assert parse_resiliency([doc(SPEC)], "app").pubsub_inbound("other").retry is None


def test_constant_policy_delays_then_exhausts() -> None:
    retry = RetryPolicy(policy="constant", duration=0.1, max_retries=3)
    assert [retry.delay(n, 0.0) for n in range(4)] == [0.1, 0.1, 0.1, None]


def test_kit_defaults_retry_forever_every_5s() -> None:
    retry = RetryPolicy()
    assert retry.delay(10_000, 0.0) == 5.0


def test_exponential_grows_and_caps() -> None:
    retry = parse_resiliency([doc(SPEC)], "app").retries["expo"]
    rng = random.Random(1)
    delays = [retry.delay(n, 0.0, rng) for n in range(6)]
    assert delays[5] is None
    values = [d for d in delays if d is not None]
    assert 0.25 <= values[0] <= 0.75
    assert all(d <= 2.0 * 1.5 for d in values)
    assert retry.delay(0, 10_000.0) is None  # past maxElapsedTime (15 min default)


def test_default_named_policy_applies_to_untargeted_pubsub() -> None:
    spec = {
        "policies": {"retries": {"DefaultPubsubComponentInboundRetryPolicy": {"duration": "1s"}}}
    }
    policy = parse_resiliency([doc(spec)], "app").pubsub_inbound("pubsub")
    assert policy.retry is not None and policy.retry.duration == 1.0


def test_scopes_filter_documents() -> None:
    assert parse_resiliency([doc(SPEC, ["other"])], "app").pubsub_inbound("pubsub").retry is None
    assert parse_resiliency([doc(SPEC, ["app"])], "app").pubsub_inbound("pubsub").retry


def test_an_undefined_retry_or_timeout_is_no_policy() -> None:
    spec = {
        "policies": {"retries": {"DefaultRetryPolicy": {"maxRetries": 2}}},
        "targets": {"components": {"pubsub": {"inbound": {"retry": "missing", "timeout": "gone"}}}},
    }
    policy = parse_resiliency([doc(spec)], "app").pubsub_inbound("pubsub")
    assert policy.empty  # as daprd: the target's names are looked up, the default is not


def test_a_timeout_of_zero_or_less_is_no_timeout() -> None:
    spec = {
        "policies": {"timeouts": {"none": "0s", "negative": "-1s", "DefaultTimeoutPolicy": "0"}},
        "targets": {"apps": {"a": {"timeout": "none"}, "b": {"timeout": "negative"}}},
    }
    resiliency = parse_resiliency([doc(spec)], "app")
    assert [resiliency.endpoint(app).timeout for app in ("a", "b", "c")] == [None, None, None]


def test_a_component_naming_an_undefined_circuit_breaker_is_refused() -> None:
    spec = {"targets": {"components": {"pubsub": {"outbound": {"circuitBreaker": "missing"}}}}}
    with pytest.raises(ResiliencyError, match="outbound circuitBreaker policy 'missing'"):
        parse_resiliency([doc(spec)], "app")


def test_a_bad_retry_policy_ends_its_document_as_daprds_decodeconfiguration_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Timeouts are decoded before retries and targets after them: the timeouts stay, the
    retries decoded before the bad one (sorted here, Go's map order in daprd) too."""
    spec = {
        "policies": {
            "timeouts": {"quick": "1s"},
            "retries": {"a": {"maxRetries": 1}, "x": {"policy": "linear"}, "z": {}},
        },
        "targets": {"apps": {"orders": {"timeout": "quick"}}},
    }
    resiliency = parse_resiliency([doc(spec)], "app")
    assert resiliency.timeouts == {"quick": 1.0}
    assert list(resiliency.retries) == ["a"]
    assert resiliency.apps == {}
    assert caplog.messages[-1] == (
        'Could not read resiliency policy r: invalid retry configuration "x": 1 error(s) '
        "decoding:\n\n* error decoding 'policy': invalid PolicyType \"linear\": unexpected back "
        "off policy type: linear"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("250ms", 0.25), ("1m30s", 90.0), ("1.5h", 5400.0), ("0", 0.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_policies_the_sidecar_does_not_apply_are_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = {
        "policies": {"retries": {"three": {"policy": "constant", "maxRetries": 3}}},
        "targets": {
            "apps": {"microservice-x": {"retry": "three"}},
            "actors": {"cart": {"retry": "three"}},
            "components": {"statestore": {"outbound": {"retry": "three"}}},
        },
    }
    with caplog.at_level("WARNING", logger="sidecar.resiliency"):
        parse_resiliency([doc(spec)], "app")
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "targets.actors is not supported" in warned
    assert "apps" not in warned and "statestore" not in warned  # both applied now


# --- Service invocation (targets.apps) --------------------------------------------------------

APPS = {
    "policies": {
        "retries": {
            "picky": {
                "policy": "constant",
                "duration": "10ms",
                "matching": {"httpStatusCodes": "429,500-503", "gRPCStatusCodes": "14"},
            },
            "DefaultAppRetryPolicy": {"policy": "constant", "maxRetries": 1},
            "DefaultRetryPolicy": {"policy": "constant", "maxRetries": 9},
        },
        "timeouts": {"quick": "250ms"},
    },
    "targets": {"apps": {"orders": {"retry": "picky", "timeout": "quick"}}},
}


def test_an_apps_policy_and_the_app_defaults() -> None:
    resiliency = parse_resiliency([doc(APPS)], "caller")
    orders = resiliency.endpoint("orders")
    assert orders.timeout == 0.25 and orders.retry is not None
    assert orders.retry.duration == 0.01
    other = resiliency.endpoint("anyone")  # DefaultAppRetryPolicy before DefaultRetryPolicy
    assert other.retry is not None and other.retry.max_retries == 1 and other.timeout is None
    # Inbound pub/sub does not read the App level.
    inbound = resiliency.pubsub_inbound("pubsub").retry
    assert inbound is not None and inbound.max_retries == 9


def test_matching_retries_only_the_listed_codes() -> None:
    picky = parse_resiliency([doc(APPS)], "caller").endpoint("orders").retry
    assert picky is not None
    assert [picky.retries_code(c) for c in (429, 500, 503, 504, 404)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert [picky.retries_code(c) for c in (14, 2)] == [True, False]  # gRPC UNAVAILABLE only
    assert RetryPolicy().retries_code(404) and RetryPolicy().retries_code(4)  # no matching: all


@pytest.mark.parametrize(
    ("codes", "why"),
    [
        ({"httpStatusCodes": "600"}, "invalid pattern 600, start code 600 is not valid"),
        ({"httpStatusCodes": "500-503-504"}, "invalid pattern 500-503-504, more than one '-'"),
        ({"gRPCStatusCodes": "17"}, "invalid pattern 17, start code 17 is not valid"),
        (
            {"httpStatusCodes": "503-500"},
            "invalid pattern 503-500, start value should not bigger than end value",
        ),
        (
            {"httpStatusCodes": "5xx"},
            'failed to parse start code 5xx from pattern 5xx to int, strconv.Atoi: parsing "5xx"',
        ),
    ],
)
def test_bad_matching_ends_its_document(
    codes: dict[str, str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    spec = {
        "policies": {"retries": {"r": {"matching": codes}}},
        "targets": {"apps": {"orders": {"retry": "r"}}},
    }
    resiliency = parse_resiliency([doc(spec)], "caller")
    assert resiliency.retries == {} and resiliency.apps == {}
    assert caplog.messages[-1].startswith(f"Could not read resiliency policy r: {why}")


def test_an_app_naming_undefined_policies_gets_none(caplog: pytest.LogCaptureFixture) -> None:
    spec = {"targets": {"apps": {"orders": {"retry": "a", "timeout": "b", "circuitBreaker": "c"}}}}
    assert parse_resiliency([doc(spec)], "caller").endpoint("orders").empty
    # daprd is silent; the sidecar names each likely typo.
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for kind, name in (("retry", "a"), ("timeout", "b"), ("circuitBreaker", "c")):
        assert f"app 'orders' names {kind} policy '{name}', which is not defined" in "\n".join(
            warned
        )
    caplog.clear()
    built_in = {"targets": {"apps": {"orders": {"retry": "DaprBuiltInServiceRetries"}}}}
    parse_resiliency([doc(built_in)], "caller")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DaprBuiltInServiceRetries", RetryPolicy(duration=1.0, max_retries=3)),
        ("DaprBuiltInActorNotFoundRetries", RetryPolicy(duration=1.0, max_retries=5)),
    ],
)
def test_a_target_naming_an_undefined_built_in_policy_gets_daprds(
    name: str, expected: RetryPolicy
) -> None:
    spec = {"targets": {"apps": {"orders": {"retry": name}}}}
    assert parse_resiliency([doc(spec)], "caller").endpoint("orders").retry == expected


def test_daprds_built_in_reminder_retries_never_retry() -> None:
    # A Go struct literal without MaxRetries: zero, so dapr/kit stops before the first retry.
    retry = parse_resiliency([], "app").built_in("DaprBuiltInActorReminderRetries").retry
    assert retry is not None and retry.delay(0, 0.0) is None


def test_component_outbound_policies_and_their_defaults() -> None:
    spec = {
        "policies": {
            "retries": {
                "three": {"policy": "constant", "maxRetries": 3},
                "DefaultStatestoreComponentOutboundRetryPolicy": {"maxRetries": 1},
                "DefaultComponentOutboundRetryPolicy": {"maxRetries": 2},
                "DefaultComponentInboundRetryPolicy": {"maxRetries": 4},
            },
            "timeouts": {"quick": "1s"},
        },
        "targets": {
            "components": {
                "statestore": {"outbound": {"retry": "three", "timeout": "quick"}},
                "pubsub": {"inbound": {"retry": "three"}},
            }
        },
    }
    resiliency = parse_resiliency([doc(spec)], "app")
    own = resiliency.component_outbound("statestore", "Statestore")
    assert own.timeout == 1.0 and own.retry is not None and own.retry.max_retries == 3
    other_store = resiliency.component_outbound("sqlitestore", "Statestore").retry
    assert other_store is not None and other_store.max_retries == 1
    other_pubsub = resiliency.component_outbound("orders", "Pubsub").retry
    assert other_pubsub is not None and other_pubsub.max_retries == 2
    # Named with inbound policies only: no outbound policy, and no default either, as daprd's
    # ComponentOutboundPolicy falls back to the defaults only for components it has no entry
    # for; the same holds inbound for a component named with outbound policies only.
    assert resiliency.component_outbound("pubsub", "Pubsub").empty
    assert resiliency.pubsub_inbound("statestore").empty
    inbound = resiliency.pubsub_inbound("orders").retry
    assert inbound is not None and inbound.max_retries == 4


def test_a_later_document_naming_a_component_replaces_both_its_directions() -> None:
    """daprd's decodeTargets stores a component's inbound and outbound names together."""
    first = {
        "policies": {"retries": {"three": {"policy": "constant", "maxRetries": 3}}},
        "targets": {"components": {"pubsub": {"outbound": {"retry": "three"}}}},
    }
    second = {"targets": {"components": {"pubsub": {"inbound": {"retry": "three"}}}}}
    resiliency = parse_resiliency([doc(first), doc(second)], "app")
    assert resiliency.component_outbound("pubsub", "Pubsub").empty
    assert resiliency.pubsub_inbound("pubsub").retry is not None


def test_daprds_built_in_initialization_retries() -> None:
    policy = parse_resiliency([], "app").built_in("DaprBuiltInInitializationRetries")
    assert policy.timeout is None and policy.breaker is None
    assert policy.retry == RetryPolicy(
        policy="exponential",
        duration=2.0,
        initial_interval=0.5,
        multiplier=1.5,
        max_interval=1.0,
        max_elapsed=10.0,
        max_retries=3,
    )


@pytest.mark.parametrize(("given", "kept"), [(1, 3), (-1, 3), (5, 5)])
def test_a_policy_of_a_built_in_name_replaces_it_with_at_least_3_retries(
    given: int, kept: int, caplog: pytest.LogCaptureFixture
) -> None:
    spec = {"policies": {"retries": {"DaprBuiltInInitializationRetries": {"maxRetries": given}}}}
    retry = parse_resiliency([doc(spec)], "app").built_in("DaprBuiltInInitializationRetries").retry
    assert retry is not None
    assert (retry.policy, retry.duration, retry.max_retries) == ("constant", 5.0, kept)
    assert ("did not meet minimum retry count" in caplog.text) == (given < 3)


def test_the_protected_built_in_policy_is_not_replaced() -> None:
    spec = {"policies": {"retries": {"DaprBuiltInActorNotFoundRetries": {"maxRetries": 9}}}}
    retry = parse_resiliency([doc(spec)], "app").built_in("DaprBuiltInActorNotFoundRetries").retry
    assert retry == RetryPolicy(duration=1.0, max_retries=5)
