"""``Idempotency-Key`` for job submission: the same key and body give back the same job.

The key is claimed with a first-write save before the job is created, so two replicas racing on
one key agree on one job id. The record expires after the configured retention (default 24 h),
which is at most the jobs' own retention (settings.py), so a key never outlives its job
unnoticed: a job deleted through the API leaves a tombstone, and its key answers 409.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from job_orchestrator.errors import IdempotencyKeyReused, KeyJobDeleted, RequestInProgress
from job_orchestrator.store import Conflict, JobStore

#: A claimed key whose job is still missing after this long lost its creator (it died).
ORPHAN_AFTER_SECONDS = 15.0

#: The fingerprint format each claim records. A record without one was written before formats
#: had numbers, in the current format or an earlier one, so either may match it: a retry made
#: across an upgrade still finds its job.
FINGERPRINT_VERSION = 2


def record_key(idempotency_key: str) -> str:
    """Hashed, so any header value makes a valid state key (no ``||``, bounded length)."""
    return "idem-" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def fingerprint(request: dict[str, Any]) -> str:
    """Stable hash of the fields that define the job (not how long the caller waits)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    job_id: str
    fresh: bool  #: True: this request must create the job; False: the job exists already


async def claim_key(
    store: JobStore,
    idempotency_key: str,
    request: dict[str, Any],
    *,
    now: float,
    retention_seconds: int,
    unversioned: Sequence[dict[str, Any]] = (),
) -> Claim:
    """Claim ``idempotency_key`` for a new job, or find the job an earlier request made.

    ``unversioned``: the request as fingerprinted by earlier formats, for records that carry no
    format number."""
    key = record_key(idempotency_key)
    digest = fingerprint(request)
    job_id = str(uuid.uuid4())
    record = {
        "jobId": job_id,
        "fingerprint": digest,
        "fingerprintVersion": FINGERPRINT_VERSION,
        "claimedAt": now,
    }
    try:
        await store.save_raw(key, record, ttl_seconds=retention_seconds, first_write=True)
        return Claim(job_id, fresh=True)
    except Conflict:
        pass
    existing, _ = await store.get_raw(key)
    if existing is None:
        # Expired between the two calls: the key is free again.
        await store.save_raw(key, record, ttl_seconds=retention_seconds, first_write=True)
        return Claim(job_id, fresh=True)
    if not _same_request(existing, digest, unversioned):
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a different job"
        )
    job, etag = await store.get(str(existing["jobId"]))
    if job is not None:
        return Claim(job.id, fresh=False)
    if etag:  # a tombstone: never create the job again under its old id
        raise KeyJobDeleted(
            f"the job this Idempotency-Key created ({existing['jobId']}) was deleted; "
            "use a new key to start another job"
        )
    if now - float(existing.get("claimedAt", 0.0)) > ORPHAN_AFTER_SECONDS:
        return Claim(str(existing["jobId"]), fresh=True)
    raise RequestInProgress(
        "a request with this Idempotency-Key is still being processed; retry in a moment"
    )


def _same_request(
    record: dict[str, Any], digest: str, unversioned: Sequence[dict[str, Any]]
) -> bool:
    recorded = record.get("fingerprint")
    if recorded == digest:
        return True
    if "fingerprintVersion" in record:
        return False
    return any(recorded == fingerprint(earlier) for earlier in unversioned)
