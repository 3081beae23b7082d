"""What every fuzzed answer must satisfy beyond schemathesis' own checks, and the bounds of a run.

Schemathesis' default checks already fail a test on a 5xx, an undocumented status or content
type, or a body that does not match the documented schema; ``problem_json_errors`` adds the
services' own promise that every 4xx/5xx is RFC 9457 ``application/problem+json``.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

#: Small and derandomized: the same examples on every run (CI reproducible), and the whole fuzz
#: package (two services, ~15 operations, positive and negative examples) within ~90 s.
FUZZ_SETTINGS = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class NotProblemJson(AssertionError):
    """An error answer that is not application/problem+json with a numeric status."""


@schemathesis.check
def problem_json_errors(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx is application/problem+json whose ``status`` repeats the HTTP status."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/problem+json"):
        raise NotProblemJson(f"{response.status_code} answered with {content_type!r}")
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise NotProblemJson(f"{response.status_code} body is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("status") != response.status_code:
        raise NotProblemJson(f"problem body does not carry status {response.status_code}: {body}")
    if not isinstance(body.get("title"), str):
        raise NotProblemJson(f"problem body has no title: {body}")
    return True


#: Keyword arguments of ``case.call_and_validate``: schemathesis' default checks plus the
#: problem+json one, minus ``positive_data_acceptance``: job ids, list cursors and
#: Idempotency-Keys are opaque, so a schema-valid but random one is rightly 404 (unknown job) or
#: 422 (bad cursor, key reused with another body), which that check would call a failure.
FUZZ_CHECKS: dict[str, Any] = {
    "additional_checks": [problem_json_errors],
    "excluded_checks": [positive_data_acceptance],
}
