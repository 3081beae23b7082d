"""One async interface over the three ways a client reaches the sidecar.

``HttpApi`` (here) speaks daprd's raw HTTP API; ``SyncSdkApi`` and ``AioSdkApi``
(``sdk_transports.py``) drive the SDK's sync and aio ``DaprClient``. Each raises ``Failure`` with
what that client surfaces of an error, so one test states daprd's answer for HTTP and for gRPC
side by side.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import pytest


@dataclass
class Failure(Exception):
    """An error as the client shows it: HTTP status + errorCode, or gRPC code + ErrorInfo reason."""

    transport: str
    status: str  #: "409" over HTTP, "ABORTED" over gRPC, "" when the SDK hides the code
    code: str  #: HTTP errorCode, gRPC ErrorInfo reason, or the SDK's "UNKNOWN"
    message: str
    resource: tuple[str, str] | None = None
    violations: list[str] = field(default_factory=list)  #: BadRequest field names
    failed_entries: list[str] = field(default_factory=list)  #: HTTP bulk publish's entry ids

    def expect(self, http: tuple[int, str], grpc: tuple[str, str]) -> None:
        """Assert daprd's answer for this transport: (status, errorCode) or (code, reason)."""
        if self.transport == "http":
            assert (self.status, self.code) == (str(http[0]), http[1]), self
        elif self.status == "":
            # aio save_state raises DaprInternalError(details) and drops the gRPC status.
            assert (self.code, bool(self.message)) == ("UNKNOWN", True), self
        else:
            assert (self.status, self.code) == grpc, self


@dataclass(frozen=True)
class Found:
    data: bytes
    etag: str
    metadata: Mapping[str, str] | None  #: None: the SDK does not surface state metadata

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class Op:
    """One transaction operation; ``value`` is JSON."""

    kind: str  #: "upsert" or "delete"
    key: str
    value: Any = None
    etag: str | None = None


@dataclass(frozen=True)
class Meta:
    app_id: str
    components: Mapping[str, tuple[str, frozenset[str]]]  #: name -> (type, capabilities)
    extended: Mapping[str, str]


async def fails(call: Awaitable[Any]) -> Failure:
    """The Failure the call raises (and fail the test if it succeeds)."""
    with pytest.raises(Failure) as caught:
        await call
    return caught.value


class Api(Protocol):
    name: str

    async def save(
        self,
        store: str,
        key: str,
        value: Any,
        *,
        etag: str | None = None,
        metadata: Mapping[str, str] | None = None,
        first_write: bool = False,
    ) -> None: ...
    async def save_many(self, store: str, items: list[tuple[str, Any, str | None]]) -> None: ...
    async def get(self, store: str, key: str) -> Found | None: ...
    async def bulk_get(self, store: str, keys: list[str]) -> list[tuple[str, Found | None]]: ...
    async def delete(self, store: str, key: str, *, etag: str | None = None) -> None: ...
    async def transact(self, store: str, ops: list[Op]) -> None: ...
    async def query(self, store: str, query: Mapping[str, Any]) -> list[tuple[str, Any]]: ...
    async def publish(
        self, pubsub: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None: ...
    async def bulk_publish(
        self, pubsub: str, topic: str, events: list[str], metadata: Mapping[str, str]
    ) -> list[str]: ...
    async def invoke(self, app_id: str, method: str, data: bytes) -> tuple[int, Any]: ...
    async def metadata(self) -> Meta: ...
    async def set_metadata(self, key: str, value: str) -> None: ...


def _http_failure(response: httpx.Response) -> Failure:
    body = response.json()
    resource, violations = None, []
    for detail in body.get("details") or []:
        if detail["@type"].endswith("ResourceInfo"):
            resource = (detail["resource_type"], detail["resource_name"])
        if detail["@type"].endswith("BadRequest"):
            violations = [v["field"] for v in detail["field_violations"]]
    return Failure(
        "http", str(response.status_code), body["errorCode"], body["message"], resource, violations
    )


class HttpApi:
    name = "http"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.http = client

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 400 and path.startswith("/v1.0"):
            if "errorCode" in response.text:
                raise _http_failure(response)
        return response

    async def save(
        self,
        store: str,
        key: str,
        value: Any,
        *,
        etag: str | None = None,
        metadata: Mapping[str, str] | None = None,
        first_write: bool = False,
    ) -> None:
        item: dict[str, Any] = {"key": key, "value": value}
        if etag is not None:
            item["etag"] = etag
        if metadata:
            item["metadata"] = dict(metadata)
        if first_write:
            item["options"] = {"concurrency": "first-write"}
        response = await self._call("POST", f"/v1.0/state/{store}", json=[item])
        assert response.status_code == 204, response.text

    async def save_many(self, store: str, items: list[tuple[str, Any, str | None]]) -> None:
        body = [{"key": k, "value": v, **({"etag": e} if e else {})} for k, v, e in items]
        response = await self._call("POST", f"/v1.0/state/{store}", json=body)
        assert response.status_code == 204, response.text

    async def get(self, store: str, key: str) -> Found | None:
        response = await self._call("GET", f"/v1.0/state/{store}/{key}")
        if response.status_code == 204:
            assert response.content == b"", "a missing key answers 204 with no body"
            return None
        assert response.status_code == 200, response.text
        # Header names are case-insensitive: the metadata keys come back lower-cased.
        meta = {k[9:]: v for k, v in response.headers.items() if k.startswith("metadata.")}
        return Found(response.content, response.headers.get("etag", ""), meta)

    async def bulk_get(self, store: str, keys: list[str]) -> list[tuple[str, Found | None]]:
        response = await self._call("POST", f"/v1.0/state/{store}/bulk", json={"keys": keys})
        assert response.status_code == 200, response.text
        out: list[tuple[str, Found | None]] = []
        for item in response.json():
            if "data" not in item:
                assert item == {"key": item["key"]}, "a missing key is {key} only"
                out.append((item["key"], None))
            else:
                data = json.dumps(item["data"]).encode()
                out.append((item["key"], Found(data, item["etag"], item.get("metadata", {}))))
        return out

    async def delete(self, store: str, key: str, *, etag: str | None = None) -> None:
        headers = {"If-Match": etag} if etag else {}
        response = await self._call("DELETE", f"/v1.0/state/{store}/{key}", headers=headers)
        assert response.status_code == 204, response.text

    async def transact(self, store: str, ops: list[Op]) -> None:
        operations = []
        for op in ops:
            request: dict[str, Any] = {"key": op.key}
            if op.kind == "upsert":
                request["value"] = op.value
            if op.etag is not None:
                request["etag"] = op.etag
            operations.append({"operation": op.kind, "request": request})
        body = {"operations": operations}
        response = await self._call("POST", f"/v1.0/state/{store}/transaction", json=body)
        assert response.status_code == 204, response.text

    async def query(self, store: str, query: Mapping[str, Any]) -> list[tuple[str, Any]]:
        response = await self._call("POST", f"/v1.0-alpha1/state/{store}/query", json=query)
        if response.status_code == 204:
            return []
        assert response.status_code == 200, response.text
        return [(r["key"], r["data"]) for r in response.json()["results"]]

    async def publish(
        self, pubsub: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        params = {f"metadata.{k}": v for k, v in metadata.items()}
        headers = {"Content-Type": content_type} if content_type else {}
        path = f"/v1.0/publish/{pubsub}/{topic}"
        response = await self._call("POST", path, content=data, headers=headers, params=params)
        assert response.status_code == 204, response.text

    async def bulk_publish(
        self, pubsub: str, topic: str, events: list[str], metadata: Mapping[str, str]
    ) -> list[str]:
        entries = [
            {"entryId": str(n), "event": event, "contentType": "text/plain"}
            for n, event in enumerate(events)
        ]
        params = {f"metadata.{k}": v for k, v in metadata.items()}
        path = f"/v1.0-alpha1/publish/bulk/{pubsub}/{topic}"
        response = await self.http.post(path, json=entries, params=params)
        if response.status_code == 204:
            return []
        body = response.json()
        if "failedEntries" not in body:
            raise _http_failure(response)
        failure = Failure("http", str(response.status_code), body["errorCode"], response.text)
        failure.failed_entries = [entry["entryId"] for entry in body["failedEntries"]]
        raise failure

    async def invoke(self, app_id: str, method: str, data: bytes) -> tuple[int, Any]:
        path = f"/v1.0/invoke/{app_id}/method/{method}"
        response = await self._call("POST", path, content=data)
        if response.status_code >= 400:  # the app's own error, passed through as it answered
            raise Failure("http", str(response.status_code), "", response.text)
        return response.status_code, response.json()

    async def metadata(self) -> Meta:
        body = (await self._call("GET", "/v1.0/metadata")).json()
        components = {
            c["name"]: (c["type"], frozenset(c.get("capabilities") or []))
            for c in body["components"]
        }
        return Meta(body["id"], components, body.get("extended") or {})

    async def set_metadata(self, key: str, value: str) -> None:
        response = await self._call("PUT", f"/v1.0/metadata/{key}", content=value.encode())
        assert response.status_code == 204, response.text
