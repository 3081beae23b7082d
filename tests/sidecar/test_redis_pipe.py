"""The pipelined Redis connection against a real redis-server: ordering, errors, faults, auth."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import psutil
import pytest
import redis

from sidecar.redis_pipe import (
    OutcomeUnknown,
    PipeSettings,
    RedisPipe,
    RedisUnavailable,
    ReplyError,
)
from tests.conftest import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def pipe(redis_server: RedisServer) -> AsyncIterator[RedisPipe]:
    client = RedisPipe(PipeSettings("127.0.0.1", redis_server.port))
    yield client
    await client.close()


def _key(label: str) -> str:
    return f"pipe-{label}-{os.urandom(6).hex()}"


async def test_concurrent_callers_get_their_own_replies(
    pipe: RedisPipe, redis_server: RedisServer
) -> None:
    def connections() -> set[tuple[str, int]]:
        """This process's TCP connections to the Redis server (its local addresses)."""
        return {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == redis_server.port
        }

    before = connections()
    key = _key("n")
    payloads = {i: os.urandom(i * 37 % 5000) for i in range(300)}
    keys = {i: _key(f"v{i}") for i in payloads}
    await asyncio.gather(*(pipe.execute("SET", keys[i], v) for i, v in payloads.items()))
    gets, incrs = await asyncio.gather(
        asyncio.gather(*(pipe.execute("GET", keys[i]) for i in payloads)),
        asyncio.gather(*(pipe.execute("INCR", key) for _ in range(300))),
    )
    assert list(gets) == list(payloads.values())
    assert sorted(incrs) == list(range(1, 301))
    assert len(connections() - before) == 1  # 900 concurrent commands, one connection


async def test_a_reply_larger_than_one_read(pipe: RedisPipe) -> None:
    key, value = _key("big"), os.urandom(3 * 1024 * 1024)
    await pipe.execute("SET", key, value)
    assert await pipe.execute("GET", key) == value
    hash_key = _key("h")
    await pipe.execute("HSET", hash_key, "data", value, "version", 1)
    flat = await pipe.execute("HGETALL", hash_key)
    assert dict(zip(flat[::2], flat[1::2], strict=True)) == {b"data": value, b"version": b"1"}


async def test_error_replies(pipe: RedisPipe) -> None:
    key = _key("s")
    await pipe.execute("SET", key, "text")
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        await pipe.execute("HGETALL", key)
    with pytest.raises(ReplyError) as missing:
        await pipe.execute("EVALSHA", "0" * 40, 0)
    assert missing.value.no_script
    replies = await pipe.execute_many([("GET", key), ("HGET", key, "f"), ("STRLEN", key)])
    assert replies[0] == b"text" and replies[2] == 4
    assert isinstance(replies[1], ReplyError) and not replies[1].no_script
    # The connection is still in step after the errors.
    assert await pipe.execute("PING") == b"PONG"


async def test_transaction(pipe: RedisPipe) -> None:
    key, text = _key("t"), _key("txt")
    await pipe.execute("SET", text, "x")
    replies = await pipe.transaction([("INCR", key), ("INCR", text), ("INCR", key)])
    assert replies[0] == 1 and replies[2] == 2
    assert isinstance(replies[1], ReplyError)  # runtime error: the others still applied
    with pytest.raises(ReplyError, match="wrong number of arguments"):
        await pipe.transaction([("INCR", key), ("INCR",)])  # refused at queue time: EXECABORT
    assert await pipe.execute("GET", key) == b"2"  # nothing of the aborted transaction ran


async def test_redis_down_fails_fast_then_recovers(own_redis: RedisServer) -> None:
    pipe = RedisPipe(PipeSettings("127.0.0.1", own_redis.port, connect_timeout=1.0))
    try:
        await pipe.execute("SET", "k", "before")
        own_redis.stop()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RedisUnavailable):
            await pipe.execute("GET", "k")
        assert loop.time() - started < 5  # go-redis-like retries, not an endless wait
        own_redis.restart()
        assert await pipe.execute("GET", "k") == b"before"  # append-only file kept it
        # Restart again without letting the loop notice: the first command meets a dead
        # socket and is sent again on a new connection.
        own_redis.restart()
        assert await pipe.execute("GET", "k") == b"before"
    finally:
        await pipe.close()


async def test_in_flight_commands_fail_when_the_server_dies(own_redis: RedisServer) -> None:
    pipe = RedisPipe(PipeSettings("127.0.0.1", own_redis.port, max_retries=0))
    try:
        blocked = asyncio.ensure_future(pipe.execute("BLPOP", _key("never"), 30))
        await asyncio.sleep(0.2)
        own_redis.kill9()
        with pytest.raises(RedisUnavailable):
            await asyncio.wait_for(blocked, 10)
    finally:
        await pipe.close()


#: Holds Redis busy for about 0.6 s inside the transaction, so it can be killed mid-way.
BUSY_SCRIPT = """
local start = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > 600000 then return 1 end
end
"""


async def test_a_transaction_cut_off_mid_way_is_reported_unknown_and_never_resent(
    own_redis: RedisServer,
) -> None:
    """A resent transaction could run twice; its outcome is reported unknown instead."""
    pipe = RedisPipe(PipeSettings("127.0.0.1", own_redis.port, max_retries=3))
    try:
        await pipe.execute("PING")
        cut = asyncio.ensure_future(pipe.transaction([("INCR", "runs"), ("EVAL", BUSY_SCRIPT, 0)]))
        await asyncio.sleep(0.2)
        own_redis.kill9()
        own_redis.restart()  # back (empty) before the pipe would have resent it
        with pytest.raises(OutcomeUnknown):
            await asyncio.wait_for(cut, 10)
        assert await pipe.execute("GET", "runs") is None  # it was not run again
        # Plain commands still go through the retry on a new connection.
        assert await pipe.execute("INCR", "runs") == 1
    finally:
        await pipe.close()


async def test_password_and_database(own_redis: RedisServer) -> None:
    admin = redis.Redis(port=own_redis.port)
    admin.config_set("requirepass", "s3cret")
    good = RedisPipe(PipeSettings("127.0.0.1", own_redis.port, password="s3cret", db=3))
    wrong = RedisPipe(PipeSettings("127.0.0.1", own_redis.port, password="nope", max_retries=0))
    try:
        await good.execute("SET", "in-db-3", "yes")
        checker = redis.Redis(port=own_redis.port, password="s3cret", db=3)
        assert checker.get("in-db-3") == b"yes"
        assert redis.Redis(port=own_redis.port, password="s3cret").get("in-db-3") is None
        with pytest.raises(RedisUnavailable, match="WRONGPASS|invalid password"):
            await wrong.execute("PING")
    finally:
        await good.close()
        await wrong.close()


async def test_closed_pipe_refuses(redis_server: RedisServer) -> None:
    pipe = RedisPipe(PipeSettings("127.0.0.1", redis_server.port))
    assert await pipe.execute("PING") == b"PONG"
    await pipe.close()
    with pytest.raises(RedisUnavailable, match="closed"):
        await pipe.execute("PING")
