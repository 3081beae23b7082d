"""``state.redis``: one hash per key (fields ``data`` and ``version``), etag = version.

The etag/first-write check and the write run in one Lua script, like components-contrib
state/redis (setDefaultQuery/delDefaultQuery); ours also applies the TTL inside the script
so a set is one round trip. Transactions are MULTI/EXEC of those scripts: Redis has no
rollback, so an etag failure fails only its own operation and the others are applied
(contrib's Multi behaves the same; daprd documents redis transactions as not atomic).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sidecar import go_values
from sidecar.components import Component, ComponentError
from sidecar.redis_conn import redis_pipe
from sidecar.redis_endpoint import RedisEndpoint
from sidecar.redis_pipe import OutcomeUnknown as RedisOutcomeUnknown
from sidecar.redis_pipe import ReplyError
from sidecar.state.base import (
    BulkGetItem,
    Concurrency,
    DeleteRequest,
    ETagInvalid,
    GetResponse,
    InvalidRequest,
    OutcomeUnknown,
    PartialTransaction,
    QueryResponse,
    SetRequest,
    StateError,
    StoreUnavailable,
    StreamAppend,
)
from sidecar.state.metadata import check_options, etag_mismatch, go_atoi, parse_ttl

logger = logging.getLogger(__name__)

# ARGV: etag ("0" = none), data, first-write flag ("0" = set it), ttl ("" = keep, >0 = EXPIRE,
# <=0 = PERSIST). Same decision as contrib's setDefaultQuery: write when the key has no
# version, the etag matches, or no etag was given and the key was not written first-write.
SET_SCRIPT = """
local etag = redis.pcall("HGET", KEYS[1], "version")
if type(etag) == "table" then
  redis.call("DEL", KEYS[1])
end
local fwr = redis.pcall("HGET", KEYS[1], "first-write")
if not etag or type(etag) == "table" or etag == "" or etag == ARGV[1]
    or (not fwr and ARGV[1] == "0") then
  redis.call("HSET", KEYS[1], "data", ARGV[2])
  if ARGV[3] == "0" then
    redis.call("HSET", KEYS[1], "first-write", 0)
  end
  local version = redis.call("HINCRBY", KEYS[1], "version", 1)
  if ARGV[4] ~= "" then
    local ttl = tonumber(ARGV[4])
    if ttl > 0 then
      redis.call("EXPIRE", KEYS[1], ttl)
    else
      redis.call("PERSIST", KEYS[1])
    end
  end
  return version
end
return redis.error_reply("failed to set key " .. KEYS[1])
"""

# SET_SCRIPT, then XADD KEYS[2] ARGV[5..] if and only if the set was applied. Redis does not undo
# a script's writes when a later command fails, so what could fail the XADD (the key holding
# another type) is checked before anything is written; a full memory fails the first write.
SET_APPEND_SCRIPT = f"""
local kind = redis.call("TYPE", KEYS[2])["ok"]
if kind ~= "none" and kind ~= "stream" then
  return redis.error_reply("WRONGTYPE " .. KEYS[2] .. " is not a stream")
end
local function set()
{SET_SCRIPT}
end
local version = set()
if type(version) == "table" then
  return version
end
redis.call("XADD", KEYS[2], unpack(ARGV, 5))
return version
"""

DELETE_SCRIPT = """
local etag = redis.pcall("HGET", KEYS[1], "version")
if not etag or type(etag) == "table" or etag == ARGV[1] or etag == "" or ARGV[1] == "0" then
  return redis.call("DEL", KEYS[1])
end
return redis.error_reply("failed to delete " .. KEYS[1])
"""

#: (script, keys, arguments): an EVALSHA of one of the scripts above
_Call = tuple[str, tuple[str, ...], tuple[str | bytes | int, ...]]
_UNAVAILABLE = (OSError, TimeoutError)  #: RedisUnavailable is a ConnectionError


def _etag_arg(request: SetRequest) -> str:
    """Contrib's parseETag: no etag, or last-write given explicitly = "0" (the etag is then
    neither parsed nor compared); otherwise it must be an integer."""
    if not request.etag or request.concurrency == Concurrency.LAST_WRITE:
        return "0"
    try:
        return str(go_atoi(request.etag, "Atoi"))
    except ValueError as exc:
        raise ETagInvalid(f"invalid etag value: {exc}") from None


class RedisStateStore:
    capabilities = ("ETAG", "TRANSACTIONAL", "TTL", "KEYS_LIKE", "ACTOR")
    features = frozenset(capabilities)
    marshal = staticmethod(go_values.jsoniter_fastest)

    def __init__(self, component: Component) -> None:
        self.name = component.name
        self._component = component
        self._redis = redis_pipe(component)
        self._host = component.metadata.get("redisHost", "")
        # Component-wide default TTL (contrib's clientSettings.TTLInSeconds).
        self._default_ttl = component.metadata.get("ttlInSeconds", "")
        if self._default_ttl:
            try:
                go_atoi(self._default_ttl)
            except ValueError as exc:
                raise ComponentError(component, "ttlInSeconds", str(exc)) from None
        self._set_sha = ""
        self._delete_sha = ""
        self._set_append_sha = ""

    @property
    def endpoint(self) -> RedisEndpoint:
        return self._redis.settings.endpoint

    async def init(self) -> None:
        try:
            await self._redis.execute("PING")
            await self._load_scripts()
        except (*_UNAVAILABLE, ReplyError) as exc:
            raise ComponentError(
                self._component,
                "redisHost",
                f"redis store: error connecting to redis at {self._host}: {exc}",
            ) from exc

    async def _load_scripts(self) -> None:
        scripts = (SET_SCRIPT, DELETE_SCRIPT, SET_APPEND_SCRIPT)
        shas = await self._redis.execute_many([("SCRIPT", "LOAD", script) for script in scripts])
        for sha in shas:
            if isinstance(sha, ReplyError):
                raise sha
        self._set_sha, self._delete_sha, self._set_append_sha = (sha.decode() for sha in shas)

    async def close(self) -> None:
        await self._redis.close()

    async def _evalsha(self, sha_name: str, key: str, *args: str | bytes) -> Any:
        """EVALSHA, loading the scripts again if Redis lost them (restart, SCRIPT FLUSH)."""
        try:
            return await self._redis.execute("EVALSHA", getattr(self, sha_name), 1, key, *args)
        except ReplyError as exc:
            if not exc.no_script:
                raise
            await self._load_scripts()
            return await self._redis.execute("EVALSHA", getattr(self, sha_name), 1, key, *args)

    async def get(self, key: str) -> GetResponse | None:
        try:
            fields = await self._redis.execute("HGETALL", key)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        except ReplyError:
            return await self._plain_get(key)
        return _response(fields)

    async def _plain_get(self, key: str) -> GetResponse | None:
        """Contrib falls back to GET for keys written as plain strings."""
        try:
            raw = await self._redis.execute("GET", key)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        except ReplyError as exc:
            raise StateError(str(exc)) from exc
        return None if raw is None else GetResponse(bytes(raw), None)

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]:
        try:
            results = await self._redis.execute_many([("HGETALL", key) for key in keys])
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        items: list[BulkGetItem] = []
        for key, result in zip(keys, results, strict=True):
            try:
                if isinstance(result, ReplyError):
                    items.append(BulkGetItem(key, await self._plain_get(key)))
                else:
                    items.append(BulkGetItem(key, _response(result)))
            except StateError as exc:
                if isinstance(exc, StoreUnavailable):
                    raise
                items.append(BulkGetItem(key, None, str(exc)))
        return items

    def _ttl_arg(self, request: SetRequest) -> str:
        try:
            ttl = parse_ttl(request.metadata, strict=False)
        except InvalidRequest as exc:
            raise InvalidRequest(f"failed to parse ttl from metadata: {exc}") from None
        if ttl is None:
            return self._default_ttl
        return str(ttl)

    async def set(self, request: SetRequest) -> None:
        check_options(request.concurrency, request.consistency)
        etag = _etag_arg(request)
        ttl = self._ttl_arg(request)
        first_write = "0" if request.concurrency == Concurrency.FIRST_WRITE else "1"
        try:
            await self._evalsha("_set_sha", request.key, etag, request.value, first_write, ttl)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        except ReplyError as exc:
            if request.etag:
                raise etag_mismatch(exc) from exc
            raise StateError(f"failed to set key {request.key}: {exc}") from exc

    async def delete(self, request: DeleteRequest) -> None:
        # Contrib's Delete checks the options but compares any etag, whatever the concurrency.
        check_options(request.concurrency, request.consistency)
        try:
            await self._evalsha("_delete_sha", request.key, request.etag or "0")
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        except ReplyError as exc:
            raise etag_mismatch(exc) from exc

    async def transact(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        await self.transact_appending(operations, {})

    async def transact_appending(
        self,
        operations: Sequence[SetRequest | DeleteRequest],
        appends: Mapping[int, StreamAppend],
    ) -> None:
        # Parse everything first: like contrib, a bad etag or TTL sends nothing to Redis.
        # Contrib's Multi does not check the options (state.CheckRequestOptions).
        calls: list[_Call] = []
        for index, op in enumerate(operations):
            if isinstance(op, SetRequest):
                # Contrib's Multi passes no first-write flag to the script.
                args = (_etag_arg(op), op.value, "1", self._ttl_arg(op))
                append = appends.get(index)
                if append is None:
                    calls.append(("_set_sha", (op.key,), args))
                else:
                    calls.append(("_set_append_sha", (op.key, append.stream), args + append.args))
            else:
                calls.append(("_delete_sha", (op.key,), (op.etag or "0",)))
        for attempt in range(2):
            results = await self._exec_multi(calls)
            errors = [r for r in results if isinstance(r, Exception)]
            if attempt == 0 and results and all(_no_script(r) for r in results):
                # Nothing ran (Redis restarted and lost the scripts): load them and retry.
                await self._load_scripts()
                continue
            if len(errors) == len(results):
                raise StateError(str(errors[0]))
            if errors:
                applied = (i for i, r in enumerate(results) if not isinstance(r, Exception))
                raise PartialTransaction(str(errors[0]), frozenset(applied))
            return

    async def _exec_multi(self, calls: list[_Call]) -> list[Any]:
        commands = [
            ("EVALSHA", getattr(self, script), len(keys), *keys, *args)
            for script, keys, args in calls
        ]
        try:
            return await self._redis.transaction(commands)
        except RedisOutcomeUnknown as exc:
            raise OutcomeUnknown(str(exc)) from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        except ReplyError as exc:
            raise StateError(str(exc)) from exc

    async def query(self, query: Mapping[str, object]) -> QueryResponse:
        # daprd's redis store has a Query method that needs RedisJSON/RediSearch.
        raise InvalidRequest("redis-json server support is required for query capability")


def _no_script(reply: Any) -> bool:
    return isinstance(reply, ReplyError) and reply.no_script


def _response(fields: Sequence[bytes]) -> GetResponse | None:
    """A GetResponse from HGETALL's flat field/value list (RESP2, undecoded)."""
    if not fields:
        return None
    data = version = None
    for index in range(0, len(fields) - 1, 2):
        name = fields[index]
        if name == b"data":
            data = fields[index + 1]
        elif name == b"version":
            version = fields[index + 1]
    if data is None or version is None:
        raise StateError("required hash field 'data' or 'version' was not found")
    return GetResponse(data, version.decode())
