"""microservice-x's view store on a real sidecar and a real Redis: the job index in segments,
and views written without being read first.

The view store is driven directly (its SDK client on the sidecar's gRPC port) with segments of
four ids, so a few jobs seal several segments; Redis is read to check what was stored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
import redis

from dapr_support.clients import ClientKeeper
from microservice_x.connections import close_dapr_client, open_dapr_client
from microservice_x.events import JobEvent, parse_event
from microservice_x.index import Position
from microservice_x.settings import Settings
from microservice_x.store import ViewStore
from microservice_x.view import Outcome
from tests.conftest import RedisServer
from tests.microservice_x.stack import Sidecar, cloud_event, job_data, state_sidecar
from tests.sidecar.api.scrape import scrape_port

APP_ID = "microservice-x-index-test"
REDIS_DB = 7
SEGMENT = 4
RETENTION = 3600

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def sidecar(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    with state_sidecar(
        APP_ID, tmp_path_factory.mktemp("mx-index"), redis_server.host, REDIS_DB
    ) as started:
        yield started


@pytest.fixture
def keys(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """This module's Redis database, its app's keys deleted before each test."""
    client = redis.Redis(port=redis_server.port, db=REDIS_DB)
    for key in client.scan_iter(f"{APP_ID}||*"):
        client.delete(key)
    yield client
    client.close()


async def _no_renewal(generation: int) -> None:
    return None


@pytest_asyncio.fixture(loop_scope="module")
async def store(sidecar: Sidecar, keys: redis.Redis) -> AsyncIterator[ViewStore]:
    settings = Settings(
        app_id=APP_ID, dapr_http_port=sidecar.http_port, dapr_grpc_port=sidecar.grpc_port
    )
    client = open_dapr_client(settings)
    views = ViewStore(ClientKeeper(client, _no_renewal), settings.state_store, RETENTION, SEGMENT)
    yield views
    await views.close()
    await close_dapr_client(client)


def created(job_id: str, event_type: str = "job.created", sequence: int = 1) -> JobEvent:
    data = job_data(job_id, event_type, sequence, APP_ID)
    return parse_event(cloud_event(job_id, event_type, data))


def stored(keys: redis.Redis, key: str) -> Any:
    data = keys.hget(f"{APP_ID}||{key}", "data")
    assert isinstance(data, bytes), key
    return orjson.loads(data)


async def list_all(store: ViewStore, limit: int, status: str | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    after: Position | None = None
    for _ in range(50):
        views, after = await store.list_jobs(limit, status, after)
        pages.append([v.id for v in views])
        if after is None:
            return pages
    raise AssertionError("listing did not end")


async def test_full_heads_are_sealed_into_segments_with_the_retention(
    store: ViewStore, keys: redis.Redis
) -> None:
    ids = [uuid.uuid4().hex for _ in range(10)]
    for job_id in ids[:5]:  # one by one
        await store.apply(created(job_id), "2026-11-22T10:00:01.000Z")
    # The rest at once, as a bulk delivery: one index write for all of them.
    await store.apply_many([(created(job_id), "2026-11-22T10:00:02.000Z") for job_id in ids[5:]])

    head = stored(keys, "jobs-index")
    assert isinstance(head, dict)
    sealed = [stored(keys, f"jobs-index-{n}") for n in range(head["segment"])]
    # A head is sealed once it holds SEGMENT ids; a batch added to it may take it past that.
    assert sealed and all(isinstance(s, list) and len(s) >= SEGMENT for s in sealed)
    flat = [i for segment in sealed for i in segment] + head["ids"]
    assert flat == ids
    for n in range(head["segment"]):
        assert RETENTION - 60 < keys.ttl(f"{APP_ID}||jobs-index-{n}") <= RETENTION
    assert keys.ttl(f"{APP_ID}||jobs-index") == -1


async def test_pages_walk_every_segment_newest_first(store: ViewStore) -> None:
    ids = [uuid.uuid4().hex for _ in range(11)]
    for job_id in ids:
        await store.apply(created(job_id), "2026-11-22T10:00:01.000Z")
    for job_id in ids[::3]:
        await store.apply(created(job_id, "job.completed", 2), "2026-11-22T10:00:03.000Z")
    newest_first = list(reversed(ids))

    pages = await list_all(store, 3)
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    assert [i for page in pages for i in page] == newest_first
    completed = await list_all(store, 2, "Completed")
    assert [i for page in completed for i in page] == [i for i in newest_first if i in ids[::3]]
    everything, after = await store.list_jobs(500)
    assert [v.id for v in everything] == newest_first and after is None


async def test_a_cursor_past_the_stored_segments_gives_an_empty_page(
    store: ViewStore, keys: redis.Redis
) -> None:
    ids = [uuid.uuid4().hex for _ in range(9)]
    for job_id in ids:
        await store.apply(created(job_id), "2026-11-22T10:00:01.000Z")
    first, after = await store.list_jobs(2)
    assert [v.id for v in first] == [ids[8], ids[7]] and after is not None
    # Segment 0 (the four oldest ids) expires: the listing ends at segment 1.
    keys.delete(f"{APP_ID}||jobs-index-0")
    listed = [i for page in await list_all(store, 100) for i in page]
    assert listed == list(reversed(ids[4:]))
    assert (await store.list_jobs(5, after=Position(0, 3))) == ([], None)
    assert (await store.list_jobs(5, after=Position(99, 0))) == ([], None)


async def test_a_head_of_the_single_key_index_is_read_and_sealed(
    store: ViewStore, keys: redis.Redis
) -> None:
    """A store written by the earlier single-key index (a plain list) keeps its jobs listed."""
    old = [uuid.uuid4().hex for _ in range(6)]
    for job_id in old:
        await store.apply(created(job_id), "2026-11-22T10:00:01.000Z")
    keys.hset(f"{APP_ID}||jobs-index", "data", orjson.dumps(old))
    for n in range(3):
        keys.delete(f"{APP_ID}||jobs-index-{n}")
    new = uuid.uuid4().hex
    await store.apply(created(new), "2026-11-22T10:00:02.000Z")
    assert stored(keys, "jobs-index-0") == old
    assert stored(keys, "jobs-index") == {"segment": 1, "ids": [new]}
    listed = [i for page in await list_all(store, 4) for i in page]
    assert listed == [new, *reversed(old)]


async def test_concurrent_first_events_are_each_indexed_once(
    store: ViewStore, keys: redis.Redis
) -> None:
    ids = [uuid.uuid4().hex for _ in range(25)]
    events = [created(job_id) for job_id in ids]
    await asyncio.gather(*(store.apply(e, "2026-11-22T10:00:01.000Z") for e in events))
    await asyncio.gather(*(store.apply(e, "2026-11-22T10:00:01.000Z") for e in events[:5]))
    head = stored(keys, "jobs-index")
    assert isinstance(head, dict)
    sealed = [stored(keys, f"jobs-index-{n}") for n in range(head["segment"])]
    flat = [i for segment in sealed for i in segment] + head["ids"]
    assert sorted(flat) == sorted(ids)
    listed = [i for page in await list_all(store, 7) for i in page]
    assert sorted(listed) == sorted(ids)


async def test_an_id_added_again_is_listed_once_where_it_is_newest(
    store: ViewStore, keys: redis.Redis
) -> None:
    ids = [uuid.uuid4().hex for _ in range(6)]
    for job_id in ids:
        await store.apply(created(job_id), "2026-11-22T10:00:01.000Z")
    # The oldest job's view expires, then a late event of that job arrives.
    keys.delete(f"{APP_ID}||job:{ids[0]}")
    await store.apply(created(ids[0], "job.completed", 3), "2026-11-22T10:00:09.000Z")
    listed = [i for page in await list_all(store, 100) for i in page]
    assert listed == [ids[0], *reversed(ids[1:])]


async def test_views_more_than_one_message_together_are_read_in_halves(store: ViewStore) -> None:
    """20 jobs with 250 KB results: their views are 5 MB, more than a sidecar sends in one
    message (4 MiB). A bulk delivery of their events and a page listing them still go."""
    ids = [uuid.uuid4().hex for _ in range(20)]

    def completed(job_id: str) -> JobEvent:
        data = job_data(job_id, "job.completed", 3, APP_ID, result="r" * 250_000)
        return parse_event(cloud_event(job_id, "job.completed", data))

    events = [(completed(job_id), "2026-11-22T10:00:01.000000+00:00") for job_id in ids]
    applied = await store.apply_many(events)
    assert [getattr(r, "outcome", r) for r in applied] == [Outcome.APPLIED] * 20
    # Delivered again (at least once): one bulk read of all 20 views.
    again = await store.apply_many(events)
    assert [getattr(r, "outcome", r) for r in again] == [Outcome.DUPLICATE] * 20
    views, after = await store.list_jobs(50)
    assert after is None
    assert sorted(v.id for v in views) == sorted(ids)
    assert {len(str(v.result)) for v in views} == {250_000}


def _state_calls(sidecar: Sidecar, operation: str) -> float:
    """State operations the sidecar has served, as daprd counts them ("get": GetState;
    "bulk_get": GetBulkState, counted apart)."""
    _, samples = scrape_port(sidecar.metrics_port)
    return sum(
        count
        for (name, labels), count in samples.items()
        if name == "dapr_component_state_count" and dict(labels)["operation"] == operation
    )


def _state_gets(sidecar: Sidecar) -> float:
    return _state_calls(sidecar, "get")


def _bulk_gets(sidecar: Sidecar) -> float:
    return _state_calls(sidecar, "bulk_get")


async def test_the_head_is_written_over_its_own_last_etag_unread(
    store: ViewStore, sidecar: Sidecar
) -> None:
    """state.redis etags count writes, so after its first write this process knows the
    head and its etag: new jobs are indexed without reading the head first (views are read
    in bulk, so every GetState here is the head's). A head another writer changed since is
    read again when the write over the stale etag loses, and nothing is lost."""
    await store.inspect()

    async def first_events(count: int, views: ViewStore) -> list[str]:
        ids = [uuid.uuid4().hex for _ in range(count)]
        applied = await views.apply_many([(created(i), "2026-11-22T10:00:00.000Z") for i in ids])
        assert [getattr(r, "outcome", r) for r in applied] == [Outcome.APPLIED] * count
        return ids

    before = _state_gets(sidecar)
    ids = [job_id for _ in range(3) for job_id in await first_events(3, store)]
    assert _state_gets(sidecar) - before == 1  # the first write's read only
    settings = Settings(
        app_id=APP_ID, dapr_http_port=sidecar.http_port, dapr_grpc_port=sidecar.grpc_port
    )
    client = open_dapr_client(settings)
    other = ViewStore(ClientKeeper(client, _no_renewal), settings.state_store, RETENTION, SEGMENT)
    try:
        ids += await first_events(2, other)  # another replica writes the head
    finally:
        await other.close()
        await close_dapr_client(client)
    before = _state_gets(sidecar)
    ids += await first_events(2, store)
    assert _state_gets(sidecar) - before == 1  # the stale etag lost; read once, written
    listed = [job_id for page in await list_all(store, 50) for job_id in page]
    assert sorted(listed) == sorted(ids)


async def _outcomes(views: ViewStore, events: list[JobEvent]) -> list[object]:
    applied = await views.apply_many([(e, "2026-11-22T10:00:00.000Z") for e in events])
    return [getattr(r, "outcome", r) for r in applied]


async def _other_store(sidecar: Sidecar) -> tuple[ViewStore, Any]:
    """A second replica's view store on the same sidecar (it remembers nothing yet)."""
    settings = Settings(
        app_id=APP_ID, dapr_http_port=sidecar.http_port, dapr_grpc_port=sidecar.grpc_port
    )
    client = open_dapr_client(settings)
    other = ViewStore(ClientKeeper(client, _no_renewal), settings.state_store, RETENTION, SEGMENT)
    await other.inspect()
    return other, client


async def test_a_jobs_events_are_folded_without_reading_its_view(
    store: ViewStore, sidecar: Sidecar
) -> None:
    """On state.redis a creation is inserted unread, and the views written here are written
    again over the etag they got, unread: a job's whole life costs no view read."""
    await store.inspect()
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    before = _bulk_gets(sidecar)
    assert await _outcomes(store, [created(a), created(b)]) == [Outcome.APPLIED] * 2
    assert await _outcomes(store, [created(a, "job.updated", 2)]) == [Outcome.APPLIED]
    events = [created(a, "job.completed", 3), created(b, "job.updated", 2)]
    assert await _outcomes(store, events) == [Outcome.APPLIED] * 2
    assert _bulk_gets(sidecar) == before
    view_a, view_b = await store.get_job(a), await store.get_job(b)
    assert view_a is not None and view_b is not None
    assert (view_a.status, view_a.eventCount, view_b.status, view_b.eventCount) == (
        "Completed",
        3,
        "InProgress",
        2,
    )


async def test_a_view_another_replica_changed_since_is_read_again_and_nothing_is_lost(
    store: ViewStore, sidecar: Sidecar
) -> None:
    await store.inspect()
    job_id = uuid.uuid4().hex
    assert await _outcomes(store, [created(job_id)]) == [Outcome.APPLIED]
    other, client = await _other_store(sidecar)
    try:
        before = _bulk_gets(sidecar)
        assert await _outcomes(other, [created(job_id, "job.updated", 2)]) == [Outcome.APPLIED]
        assert _bulk_gets(sidecar) == before + 1  # not its own view: read
    finally:
        await other.close()
        await close_dapr_client(client)
    # Our etag is stale now: the write over it loses, and the view is read and folded again.
    assert await _outcomes(store, [created(job_id, "job.completed", 3)]) == [Outcome.APPLIED]
    view = await store.get_job(job_id)
    assert view is not None
    assert (view.status, [e.sequence for e in view.events]) == ("Completed", [1, 2, 3])


async def test_a_creation_delivered_again_finds_its_view_and_changes_nothing(
    store: ViewStore, sidecar: Sidecar, keys: redis.Redis
) -> None:
    await store.inspect()
    job_id = uuid.uuid4().hex
    first = created(job_id)
    assert (
        await _outcomes(store, [first, created(job_id, "job.updated", 2)]) == [Outcome.APPLIED] * 2
    )
    other, client = await _other_store(sidecar)
    try:
        # Taken for new, inserted, refused: read, and found to be a duplicate.
        assert await _outcomes(other, [first]) == [Outcome.DUPLICATE]
    finally:
        await other.close()
        await close_dapr_client(client)
    view = stored(keys, f"job:{job_id}")
    assert (view["status"], view["eventCount"]) == ("InProgress", 2)


async def test_where_etags_are_not_counted_every_bulk_reads_its_views(
    store: ViewStore, sidecar: Sidecar
) -> None:
    """Without inspect (or on another store) nothing is taken for known."""
    job_id = uuid.uuid4().hex
    before = _bulk_gets(sidecar)
    assert await _outcomes(store, [created(job_id)]) == [Outcome.APPLIED]
    assert await _outcomes(store, [created(job_id, "job.updated", 2)]) == [Outcome.APPLIED]
    assert _bulk_gets(sidecar) == before + 2
