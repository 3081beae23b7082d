"""Which Redis server and database a component's connection reaches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """Two components with equal endpoints write to the same keyspace as the same user."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
