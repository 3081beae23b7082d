"""microservice-x in-process, through its real routes, on a real sidecar and a real Redis.

The app runs in this process (its real lifespan, httpx over ASGI); its sidecar is a real process
with the project's components. Subscription deliveries are made here by POSTing the CloudEvents the
sidecar would deliver, so each answer (SUCCESS / DROP / RETRY) is checked directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis
from prometheus_client.parser import text_string_to_metric_families

from microservice_x.app import create_app
from microservice_x.responses import JOB_ID
from microservice_x.settings import Settings
from tests.conftest import RedisServer
from tests.microservice_x.stack import Sidecar, cloud_event, job_data, state_sidecar

#: Its own app id, so its keys (`<app id>||...`) never meet the e2e tests' in the shared Redis.
APP_ID = "microservice-x-api-test"
PROBLEM = "application/problem+json"

#: This module's own Redis database (see write_components).
REDIS_DB = 13

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def sidecar(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    with state_sidecar(
        APP_ID, tmp_path_factory.mktemp("mx-api"), redis_server.host, REDIS_DB
    ) as started:
        yield started


@pytest.fixture(scope="module")
def settings(sidecar: Sidecar) -> Settings:
    return Settings(
        app_id=APP_ID,
        dapr_http_port=sidecar.http_port,
        dapr_grpc_port=sidecar.grpc_port,
        sidecar_wait_seconds=20,
        invoke_timeout_seconds=5,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mx") as test_client:
            yield test_client


async def deliver(client: httpx.AsyncClient, event: Any) -> str:
    response = await client.post("/events/jobs", json=event)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def event(job_id: str, event_type: str, sequence: int, **kw: Any) -> dict[str, Any]:
    owner = kw.pop("owner", APP_ID)
    event_id = kw.pop("event_id", None)
    return cloud_event(
        job_id, event_type, job_data(job_id, event_type, sequence, owner, **kw), event_id
    )


def new_id() -> str:
    return uuid.uuid4().hex


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "appId": APP_ID}


async def test_head_is_answered_wherever_get_is(client: httpx.AsyncClient) -> None:
    """RFC 9110 section 9.1: the GET's status and headers, no body."""
    job_id = new_id()
    assert await deliver(client, event(job_id, "job.created", 1)) == "SUCCESS"
    for path, status in (("/healthz", 200), (f"/jobs/{job_id}", 200), (f"/jobs/{new_id()}", 404)):
        got, head = await client.get(path), await client.head(path)
        assert head.status_code == got.status_code == status, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert int(head.headers["content-length"]) == len(got.content), path
    refused = await client.put("/jobs")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD, POST"


async def test_openapi_documents_the_public_routes_only(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert set(schema["paths"]) == {
        "/jobs",
        "/jobs/{job_id}",
        "/dead-letters",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert "202" in schema["paths"]["/jobs"]["post"]["responses"]
    assert (await client.get("/docs")).status_code == 200


async def test_documented_error_examples_are_answers_it_gives(client: httpx.AsyncClient) -> None:
    """Swagger shows, under each status, a body this service really answers with it."""
    schema = (await client.get("/openapi.json")).json()

    def documented(method: str, path: str, status: int | str, name: str) -> Any:
        content = schema["paths"][path][method]["responses"][str(status)]["content"]
        return content[PROBLEM]["examples"][name]["value"]

    answers = [
        (await client.get(f"/jobs/{JOB_ID}"), ("get", "/jobs/{job_id}", 404, "unknown-job")),
        (await client.get("/jobs?limit=0"), ("get", "/jobs", 422, "limit-out-of-range")),
        (
            await client.get("/jobs?cursor=1.2.3"),
            ("get", "/jobs", 422, "not-a-cursor-of-a-link-header"),
        ),
        (
            await client.get("/dead-letters?limit=501"),
            ("get", "/dead-letters", 422, "limit-out-of-range"),
        ),
        (await client.post("/jobs", json={"type": ""}), ("post", "/jobs", 422, "invalid-field")),
        (
            await client.post("/jobs", content=b"{}", headers={"content-type": "text/plain"}),
            ("post", "/jobs", 415, "body-sent-as-text-plain"),
        ),
        (
            await client.post(
                "/jobs", content=b'{"type": "\xff"}', headers={"content-type": "application/json"}
            ),
            ("post", "/jobs", 422, "body-not-utf-8"),
        ),
        (
            await client.post(
                "/jobs", content=b'{"type":1 x}', headers={"content-type": "application/json"}
            ),
            ("post", "/jobs", 422, "not-json"),
        ),
    ]
    for response, where in answers:
        assert response.json() == documented(*where), where
    unavailable = await client.post("/jobs", json={})
    example = documented("post", "/jobs", 503, "dapr-cannot-reach-the-orchestrator")
    assert unavailable.json()["title"] == example["title"]


async def test_unknown_job_is_a_404_problem(client: httpx.AsyncClient) -> None:
    job_id = new_id()
    body = assert_problem(await client.get(f"/jobs/{job_id}"), 404)
    assert job_id in body["detail"]
    assert body["instance"] == f"/jobs/{job_id}"
    assert_problem(await client.get("/jobs/a||b"), 404)
    assert_problem(await client.get("/no-such-route"), 404)


async def test_events_build_the_job_view(client: httpx.AsyncClient) -> None:
    job_id = new_id()
    assert await deliver(client, event(job_id, "job.created", 1)) == "SUCCESS"
    view = (await client.get(f"/jobs/{job_id}")).json()
    assert (view["status"], view["sequence"], view["owner"]) == ("New", 1, APP_ID)
    assert [e["type"] for e in view["events"]] == ["job.created"]
    assert await deliver(client, event(job_id, "job.updated", 2)) == "SUCCESS"
    assert await deliver(client, event(job_id, "job.completed", 3)) == "SUCCESS"
    view = (await client.get(f"/jobs/{job_id}")).json()
    assert view["status"] == "Completed"
    assert view["result"] == {"waited": 1}
    assert view["progress"]["percent"] == 50
    assert [e["type"] for e in view["events"]] == ["job.created", "job.updated", "job.completed"]
    assert all(e["receivedAt"] for e in view["events"])


async def test_redelivered_and_out_of_order_events_leave_the_newest_state(
    client: httpx.AsyncClient,
) -> None:
    job_id = new_id()
    created = event(job_id, "job.created", 1)
    completed = event(job_id, "job.completed", 3)
    for delivery in [completed, created, event(job_id, "job.updated", 2), completed, created]:
        assert await deliver(client, delivery) == "SUCCESS"
    view = (await client.get(f"/jobs/{job_id}")).json()
    assert view["status"] == "Completed"
    assert view["sequence"] == 3
    assert view["eventCount"] == 3
    assert [e["type"] for e in view["events"]] == ["job.created", "job.updated", "job.completed"]


@pytest.mark.parametrize("owner", ["someone-else", None])
async def test_events_of_other_owners_leave_no_trace(
    client: httpx.AsyncClient, owner: str | None
) -> None:
    job_id = new_id()
    assert await deliver(client, event(job_id, "job.created", 1, owner=owner)) == "SUCCESS"
    assert_problem(await client.get(f"/jobs/{job_id}"), 404)
    assert job_id not in [
        j["id"] for j in (await client.get("/jobs", params={"limit": 500})).json()
    ]


async def test_malformed_events_are_dropped_and_not_stored(client: httpx.AsyncClient) -> None:
    job_id = new_id()
    bad = event(job_id, "job.created", 1)
    del bad["data"]["sequence"]
    assert await deliver(client, bad) == "DROP"
    assert await deliver(client, event(job_id, "job.completed", 2, status="InProgress")) == "DROP"
    response = await client.post("/events/jobs", content=b"{not json")
    assert response.json() == {"status": "DROP"}
    assert_problem(await client.get(f"/jobs/{job_id}"), 404)


async def test_dead_letters_are_recorded_once_with_their_reason(client: httpx.AsyncClient) -> None:
    job_id = new_id()
    poison = event(job_id, "job.updated", 2, event_id=f"poison-{job_id}")
    poison["data"]["sequence"] = "two"
    for _ in range(2):
        response = await client.post("/events/dead-letters", json=poison)
        assert response.json() == {"status": "SUCCESS"}
    letters = (await client.get("/dead-letters", params={"limit": 500})).json()
    mine = [d for d in letters if d["id"] == f"poison-{job_id}"]
    assert len(mine) == 1
    assert mine[0]["subject"] == job_id
    assert "data.sequence" in mine[0]["reason"]
    assert mine[0]["event"] == poison
    assert letters[0]["id"] == f"poison-{job_id}"  # newest first


async def test_a_valid_dead_lettered_event_of_ours_is_applied_not_recorded(
    client: httpx.AsyncClient,
) -> None:
    # Dapr dead-letters an event whose delivery failed (no retry policy): nothing may be lost.
    job_id = new_id()
    created = event(job_id, "job.created", 1)
    response = await client.post("/events/dead-letters", json=created)
    assert response.json() == {"status": "SUCCESS"}
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "New"
    letters = (await client.get("/dead-letters", params={"limit": 500})).json()
    assert created["id"] not in [d["id"] for d in letters]


async def test_dead_letters_of_other_owners_leave_no_trace(client: httpx.AsyncClient) -> None:
    # daprd dead-letters events that match no rule of a subscription with a dead-letter topic.
    valid = event(new_id(), "job.created", 1, owner="someone-else")
    broken = event(new_id(), "job.created", 1, owner="someone-else")
    del broken["data"]["sequence"]
    for dead in (valid, broken):
        response = await client.post("/events/dead-letters", json=dead)
        assert response.json() == {"status": "SUCCESS"}
        assert_problem(await client.get(f"/jobs/{dead['subject']}"), 404)
    letters = (await client.get("/dead-letters", params={"limit": 500})).json()
    assert not {valid["id"], broken["id"]} & {d["id"] for d in letters}


async def test_listing_is_newest_first_and_filters_by_status(client: httpx.AsyncClient) -> None:
    first, second = new_id(), new_id()
    await deliver(client, event(first, "job.created", 1))
    await deliver(client, event(second, "job.created", 1))
    await deliver(client, event(second, "job.failed", 2))
    listed = [j["id"] for j in (await client.get("/jobs", params={"limit": 500})).json()]
    assert listed.index(second) < listed.index(first)
    failed = (await client.get("/jobs", params={"status": "Failed", "limit": 500})).json()
    assert second in [j["id"] for j in failed]
    assert all(j["status"] == "Failed" for j in failed)
    assert first not in [j["id"] for j in failed]
    assert len((await client.get("/jobs", params={"limit": 1})).json()) == 1


def next_link(response: httpx.Response) -> str | None:
    """The target of the response's ``Link: <...>; rel="next"``, if any."""
    link = response.links.get("next")
    return None if link is None else str(link["url"])


async def test_listing_pages_follow_the_link_header(client: httpx.AsyncClient) -> None:
    ids = [new_id() for _ in range(5)]
    for job_id in ids:
        await deliver(client, event(job_id, "job.created", 1))
    for job_id in ids[1::2]:
        await deliver(client, event(job_id, "job.completed", 2))
    newest_first = list(reversed(ids))

    pages: list[list[str]] = []
    url: str | None = "/jobs?limit=2"
    for _ in range(3):
        assert url is not None
        response = await client.get(url)
        assert response.status_code == 200
        pages.append([j["id"] for j in response.json()])
        url = next_link(response)
    assert pages[0] + pages[1] + pages[2][:1] == newest_first
    assert url is not None and "limit=2" in url and "cursor=" in url

    # A status filter is kept in the next page's link, and pages look past other statuses.
    first = await client.get("/jobs", params={"limit": 1, "status": "Completed"})
    url = next_link(first)
    assert url is not None and "status=Completed" in url
    second = await client.get(url)
    completed = [j["id"] for j in first.json() + second.json()]
    assert completed == [ids[3], ids[1]]

    # The last page has no link; a cursor no longer in the index is past every job.
    url = "/jobs?limit=500"
    for _ in range(20):
        response = await client.get(url)
        following = next_link(response)
        if following is None:
            break
        url = following
    assert next_link(response) is None
    gone = await client.get("/jobs", params={"cursor": "999999.0"})
    assert gone.status_code == 200 and gone.json() == []
    assert "link" not in gone.headers


async def test_bad_query_parameters_are_422_problems(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/jobs", params={"limit": 0}), 422)
    assert body["errors"][0]["field"] == "query.limit"
    assert_problem(await client.get("/jobs", params={"status": "Running"}), 422)
    assert_problem(await client.get("/dead-letters", params={"limit": 9999}), 422)
    assert_problem(await client.get("/jobs", params={"cursor": "x" * 1000}), 422)
    for cursor in (new_id(), "1.2.3", "1.2\n", "-1.0", "1234567890.0"):
        body = assert_problem(await client.get("/jobs", params={"cursor": cursor}), 422)
        assert body["errors"][0]["field"] == "query.cursor"


async def test_start_job_validates_before_invoking(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/jobs", json={"owner": "other-service"}), 422)
    assert "owner must be" in body["detail"]
    body = assert_problem(await client.post("/jobs", json={"type": ""}), 422)
    assert "body.type" in body["detail"]
    for key in ("", "k" * 201):
        body = assert_problem(
            await client.post("/jobs", json={}, headers={"Idempotency-Key": key}), 422
        )
        assert body["errors"][0]["field"] == "header.Idempotency-Key"
    assert_problem(
        await client.post("/jobs", content=b"[1", headers={"content-type": "application/json"}), 422
    )
    # JSON lets an unpaired surrogate escape through; it is no text the orchestrator can take.
    for body, where in (
        (b'{"input": {"s": ["a", "b\\ud800"]}}', "body.input.s[1]"),
        (b'{"input": {}, "tag": "\\udc00"}', "body.tag"),
    ):
        response = await client.post(
            "/jobs", content=body, headers={"content-type": "application/json"}
        )
        problem = assert_problem(response, 422)
        assert f"the text at {where} holds an unpaired UTF-16 surrogate" in problem["detail"]


async def test_start_job_without_an_orchestrator_is_a_503_problem(
    client: httpx.AsyncClient,
) -> None:
    # This stack's name-resolution folder has no job-orchestrator: the sidecar cannot invoke it.
    response = await client.post("/jobs", json={"type": "wait", "input": {"seconds": 1}})
    body = assert_problem(response, 503)
    assert response.headers["retry-after"] == "2"
    assert "job-orchestrator" in body["detail"]


async def test_concurrent_deliveries_of_one_job_lose_nothing(settings: Settings) -> None:
    """Many events of one job at once: etag conflicts are re-read and re-applied."""
    job_id = new_id()
    events = [event(job_id, "job.created", 1)]
    events += [event(job_id, "job.updated", n) for n in range(2, 16)]
    events.append(event(job_id, "job.completed", 16))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mx") as ac:
            answers = await asyncio.gather(*(ac.post("/events/jobs", json=e) for e in events))
            assert [a.json()["status"] for a in answers] == ["SUCCESS"] * len(events)
            view = (await ac.get(f"/jobs/{job_id}")).json()
    assert view["status"] == "Completed"
    assert view["eventCount"] == len(events)
    assert [e["sequence"] for e in view["events"]] == list(range(1, 17))


async def test_many_new_jobs_at_once_are_all_listed(client: httpx.AsyncClient) -> None:
    """First events of many jobs at once: the index additions are batched, none is lost."""
    job_ids = [new_id() for _ in range(30)]
    answers = await asyncio.gather(
        *(deliver(client, event(job_id, "job.created", 1)) for job_id in job_ids)
    )
    assert answers == ["SUCCESS"] * len(job_ids)
    listed = [j["id"] for j in (await client.get("/jobs", params={"limit": 500})).json()]
    assert set(job_ids) <= set(listed)


async def test_state_store_down_means_retry_then_recovery(
    client: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    job_id = new_id()
    created = event(job_id, "job.created", 1)
    redis_server.stop()
    try:
        assert await deliver(client, created) == "RETRY"
        response = await client.get(f"/jobs/{job_id}")
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "2"
        assert (await client.post("/events/dead-letters", json=created)).json() == {
            "status": "RETRY"
        }
    finally:
        redis_server.restart()
    # The sidecar's Redis connections may need a moment to come back after the restart.
    answers = []
    for _ in range(150):
        answers.append(await deliver(client, created))
        if answers[-1] == "SUCCESS":
            break
        await asyncio.sleep(0.1)
    assert answers[-1] == "SUCCESS", answers
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "New"


def bulk(*events: Any) -> dict[str, Any]:
    """A bulk-subscribe delivery as Dapr makes it: one entry per event."""
    return {
        "id": str(uuid.uuid4()),
        "pubsubname": "pubsub",
        "topic": "job-events",
        "type": "com.dapr.event.sent",
        "metadata": {},
        "entries": [
            {
                "entryId": f"e{n}",
                "event": e,
                "contentType": "application/cloudevents+json",
                "metadata": {},
            }
            for n, e in enumerate(events)
        ],
    }


async def deliver_bulk(client: httpx.AsyncClient, message: dict[str, Any]) -> list[str]:
    response = await client.post("/events/jobs", json=message)
    assert response.status_code == 200, response.text
    statuses = response.json()["statuses"]
    assert [s["entryId"] for s in statuses] == [e["entryId"] for e in message["entries"]]
    return [s["status"] for s in statuses]


async def test_bulk_delivery_answers_each_entry_and_builds_every_view(
    client: httpx.AsyncClient,
) -> None:
    first, second, other = new_id(), new_id(), new_id()
    created = event(first, "job.created", 1)
    message = bulk(
        created,
        event(second, "job.created", 1),
        event(first, "job.updated", 2),
        event(other, "job.created", 1, owner="someone-else"),
        {"id": "broken", "type": "job.created", "data": {"id": first}},
        event(second, "job.completed", 3),
        event(first, "job.completed", 3),
        created,  # the same event twice in one batch
    )
    statuses = await deliver_bulk(client, message)
    assert statuses == ["SUCCESS"] * 4 + ["DROP"] + ["SUCCESS"] * 3
    one = (await client.get(f"/jobs/{first}")).json()
    assert one["status"] == "Completed"
    assert [e["sequence"] for e in one["events"]] == [1, 2, 3]
    two = (await client.get(f"/jobs/{second}")).json()
    assert (two["status"], two["eventCount"]) == ("Completed", 2)
    assert_problem(await client.get(f"/jobs/{other}"), 404)
    listed = {j["id"] for j in (await client.get("/jobs", params={"limit": 500})).json()}
    assert {first, second} <= listed and other not in listed
    # Redelivered as a whole: nothing changes, every entry is acknowledged.
    assert await deliver_bulk(client, message) == statuses
    assert (await client.get(f"/jobs/{first}")).json()["eventCount"] == 3


async def test_bulk_and_single_deliveries_racing_on_the_same_jobs_lose_nothing(
    client: httpx.AsyncClient,
) -> None:
    """Batches whose one-call write loses to concurrent writers fall back to per-view CAS."""
    job_ids = [new_id() for _ in range(4)]
    events = {j: [event(j, "job.updated", n) for n in range(1, 13)] for j in job_ids}
    batches = [bulk(*(events[j][n] for j in job_ids)) for n in range(0, 12, 2)]
    singles = [events[j][n] for j in job_ids for n in range(1, 12, 2)]
    answers = await asyncio.gather(
        *(deliver_bulk(client, b) for b in batches), *(deliver(client, e) for e in singles)
    )
    flat = [s for a in answers for s in (a if isinstance(a, list) else [a])]
    assert flat == ["SUCCESS"] * len(flat)
    for job_id in job_ids:
        view = (await client.get(f"/jobs/{job_id}")).json()
        assert view["eventCount"] == 12
        assert view["sequence"] == 12


async def test_bulk_entry_of_a_corrupt_view_is_retried_alone(
    client: httpx.AsyncClient, sidecar: Sidecar
) -> None:
    healthy, corrupt = new_id(), new_id()
    async with httpx.AsyncClient(base_url=sidecar.url) as dapr:
        saved = await dapr.post(
            "/v1.0/state/statestore", json=[{"key": f"job:{corrupt}", "value": {"not": "a view"}}]
        )
        assert saved.status_code == 204, saved.text
    statuses = await deliver_bulk(
        client, bulk(event(healthy, "job.created", 1), event(corrupt, "job.updated", 2))
    )
    assert statuses == ["SUCCESS", "RETRY"]
    assert (await client.get(f"/jobs/{healthy}")).json()["status"] == "New"


async def test_start_up_objects_are_frozen_before_serving(settings: Settings) -> None:
    gc.unfreeze()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0


async def test_views_expire_after_the_retention_and_the_index_does_not(
    client: httpx.AsyncClient, redis_server: RedisServer, settings: Settings
) -> None:
    single, batched = new_id(), new_id()
    assert await deliver(client, event(single, "job.created", 1)) == "SUCCESS"
    assert await deliver_bulk(client, bulk(event(batched, "job.created", 1))) == ["SUCCESS"]
    keys = redis.Redis(port=redis_server.port, db=REDIS_DB)
    try:
        for job_id in (single, batched):
            ttl = keys.ttl(f"{APP_ID}||job:{job_id}")
            assert settings.view_retention_seconds is not None
            assert settings.view_retention_seconds - 60 < ttl <= settings.view_retention_seconds
        assert keys.ttl(f"{APP_ID}||jobs-index") == -1  # the head; sealed segments expire
    finally:
        keys.close()


async def test_an_expired_view_is_gone_from_reads_and_listing(settings: Settings) -> None:
    short = create_app(dataclasses.replace(settings, view_retention_seconds=1))
    async with short.router.lifespan_context(short):
        transport = httpx.ASGITransport(app=short)
        async with httpx.AsyncClient(transport=transport, base_url="http://mx") as mx:
            job_id = new_id()
            assert await deliver(mx, event(job_id, "job.created", 1)) == "SUCCESS"
            assert (await mx.get(f"/jobs/{job_id}")).status_code == 200
            for _ in range(50):
                await asyncio.sleep(0.1)
                if (await mx.get(f"/jobs/{job_id}")).status_code == 404:
                    break
            assert_problem(await mx.get(f"/jobs/{job_id}"), 404)
            listed = (await mx.get("/jobs", params={"limit": 500})).json()
            assert job_id not in {j["id"] for j in listed}
            # A late event builds the view again from the job it carries.
            assert await deliver(mx, event(job_id, "job.completed", 3)) == "SUCCESS"
            assert (await mx.get(f"/jobs/{job_id}")).json()["status"] == "Completed"


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_metrics_count_what_became_of_each_event(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    job_id, other = new_id(), new_id()
    completed = event(job_id, "job.completed", 3)
    assert await deliver(client, event(job_id, "job.created", 1)) == "SUCCESS"
    assert await deliver(client, completed) == "SUCCESS"
    assert await deliver(client, completed) == "SUCCESS"  # duplicate
    assert await deliver(client, event(job_id, "job.updated", 2)) == "SUCCESS"  # stale
    assert await deliver(client, event(other, "job.created", 1, owner="else")) == "SUCCESS"
    assert await deliver(client, {"id": "x", "type": "job.created"}) == "DROP"
    statuses = await deliver_bulk(
        client, bulk(event(other, "job.created", 1), {"id": "y", "type": "job.failed"})
    )
    assert statuses == ["SUCCESS", "DROP"]
    poison = event(job_id, "job.updated", 4, event_id=f"poison-{job_id}")
    poison["data"]["sequence"] = "four"
    for _ in range(2):  # recorded once
        response = await client.post("/events/dead-letters", json=poison)
        assert response.json() == {"status": "SUCCESS"}
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    events = "microservice_x_job_events_total"
    assert delta(events, type="job.created", outcome="applied") == 2
    assert delta(events, type="job.completed", outcome="applied") == 1
    assert delta(events, type="job.completed", outcome="duplicate") == 1
    assert delta(events, type="job.updated", outcome="stale") == 1
    assert delta(events, type="job.created", outcome="not_ours") == 1
    assert delta(events, type="", outcome="malformed") == 2
    delay = "microservice_x_job_event_delay_seconds_count"
    assert delta(delay, type="job.created") == 2
    assert delta(delay, type="job.completed") == 1
    assert delta("microservice_x_dead_letters_recorded_total") == 1


async def test_an_unreadable_stored_record_is_the_documented_500_and_spares_the_listing(
    client: httpx.AsyncClient, sidecar: Sidecar
) -> None:
    """A view or the dead-letter list that does not decode (written by something else, or
    damaged) answers the 500 its OpenAPI shows, naming the key; the listing leaves that one job
    out instead of failing for every job."""
    schema = (await client.get("/openapi.json")).json()

    def documented(path: str) -> Any:
        content = schema["paths"][path]["get"]["responses"]["500"]["content"]
        return content[PROBLEM]["examples"]["unreadable-stored-record"]["value"]

    kept, damaged = new_id(), new_id()
    for job_id in (kept, damaged):
        assert await deliver(client, event(job_id, "job.created", 1)) == "SUCCESS"
    async with httpx.AsyncClient(base_url=sidecar.url, timeout=10) as dapr:
        # Removed first: a write without the etag may not replace a compare-and-swapped record.
        for key in (f"job:{damaged}", "dead-letters"):
            assert (await dapr.delete(f"/v1.0/state/statestore/{key}")).status_code == 204
        saved = await dapr.post(
            "/v1.0/state/statestore",
            json=[
                {"key": f"job:{damaged}", "value": {"id": damaged, "sequence": "many"}},
                {"key": "dead-letters", "value": "{not a list"},
            ],
        )
        assert saved.status_code == 204, saved.text
        try:
            answers = [
                (await client.get(f"/jobs/{damaged}"), "/jobs/{job_id}", f"job:{damaged}"),
                (await client.get("/dead-letters"), "/dead-letters", "dead-letters"),
            ]
            listed = await client.get("/jobs", params={"limit": 500})
        finally:
            await dapr.delete("/v1.0/state/statestore/dead-letters")
    for response, path, key in answers:
        body = assert_problem(response, 500)
        example = documented(path)
        assert (body["title"], body["status"]) == (example["title"], example["status"])
        assert repr(key) in body["detail"]
        assert "Retry-After" not in response.headers  # retrying does not fix it
    assert listed.status_code == 200, listed.text
    ids = [view["id"] for view in listed.json()]
    assert kept in ids and damaged not in ids
