"""Redis connection settings shared by state.redis and pubsub.redis (same metadata names)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from sidecar.components import Component, ComponentError
from sidecar.redis_pipe import PipeSettings, RedisPipe
from sidecar.state.metadata import parse_duration


def _host_port(component: Component) -> tuple[str, int]:
    host_port = component.require("redisHost", 'e.g. value: "127.0.0.1:6379"')
    host, _, port_text = host_port.rpartition(":")
    if not host or not port_text.isdigit():
        raise ComponentError(component, "redisHost", f"expected host:port, got {host_port!r}")
    return host, int(port_text)


def redis_pipe(component: Component) -> RedisPipe:
    """The pipelined connection for non-blocking commands, from the same metadata."""
    host, port = _host_port(component)
    return RedisPipe(
        PipeSettings(
            host=host,
            port=port,
            username=component.metadata.get("redisUsername") or None,
            password=component.metadata.get("redisPassword") or None,
            db=component.get_int("redisDB", 0),
            tls=component.get_bool("enableTLS", False),
            connect_timeout=component.init_timeout,
            max_retries=max(component.get_int("redisMaxRetries", 3), 0),
            min_backoff=parse_duration(component, "redisMinRetryInterval", 0.008),
            max_backoff=parse_duration(component, "redisMaxRetryInterval", 0.512),
        )
    )


def redis_client(component: Component) -> aioredis.Redis:
    """A pooled asyncio client from ``redisHost``, ``redisPassword``, ``redisDB``, ... ."""
    host, port = _host_port(component)
    # go-redis' retry policy as contrib configures it (3 retries, 8 ms .. 512 ms), rather than
    # redis-py's default of 10 retries, so an operation against a dead Redis fails in about 1 s.
    retry = Retry(
        ExponentialBackoff(
            cap=parse_duration(component, "redisMaxRetryInterval", 0.512),
            base=parse_duration(component, "redisMinRetryInterval", 0.008),
        ),
        max(component.get_int("redisMaxRetries", 3), 0),
    )
    # A blocking pool: under a burst, a command waits up to poolTimeout for a free connection
    # (as go-redis does) instead of failing with "Too many connections".
    pool = aioredis.BlockingConnectionPool(
        max_connections=component.get_int("poolSize", 64),
        timeout=parse_duration(component, "poolTimeout", 5.0),
        connection_class=(
            aioredis.SSLConnection
            if component.get_bool("enableTLS", False)
            else aioredis.Connection
        ),
        host=host,
        port=port,
        username=component.metadata.get("redisUsername") or None,
        password=component.metadata.get("redisPassword") or None,
        db=component.get_int("redisDB", 0),
        socket_connect_timeout=component.init_timeout,
        health_check_interval=30,
        retry=retry,
        decode_responses=False,
    )
    # from_pool: closing the client closes its pool too.
    return aioredis.Redis.from_pool(pool)
