"""Service invocation: forward ``/v1.0/invoke/{id}/method/...`` to the target app's sidecar.

The caller's sidecar resolves the target through the local registry and forwards the request to
that sidecar's HTTP API, which calls its app through the app channel. Method, query string,
headers (minus hop-by-hop ones), body and the app's status, headers and body pass through; a 3xx
is the app's answer, not followed on either hop (daprd's hop is a gRPC call). On the hop to
another app the caller's sidecar adds what daprd's invokeRemote adds: its namespace
(``dapr-caller-namespace``) and the forwarding headers naming its host (``sidecar.forwarded``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from urllib.parse import quote

import aiohttp
import grpc
from yarl import URL

from sidecar.app_channel import AppChannel, AppUnreachableError, replaced
from sidecar.app_health import UNHEALTHY_MESSAGE
from sidecar.breaker import ENDPOINT_CACHE_SIZE, Breakers
from sidecar.errors import DaprError
from sidecar.forwarded import ForwardedHost
from sidecar.invoke_method import InvalidMethod, normalize_method
from sidecar.nameresolution import AppNotFound, Instance, Registry
from sidecar.policy_runner import run
from sidecar.resiliency import Policy, Resiliency

logger = logging.getLogger(__name__)

#: RFC 9110 hop-by-hop headers, plus the ones each hop recomputes or daprd strips.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "dapr-api-token",
        "dapr-app-id",
    }
)
#: Added to the invocations a sidecar forwards to another (and given to the app, as daprd does).
FORWARDED_MARK = "dapr-caller-app-id"
#: The caller's namespace, set by its sidecar on the hop (invokev1.CallerNamespaceHeader).
CALLER_NAMESPACE = "dapr-caller-namespace"
#: The caller's Authorization on the hop between sidecars: under its own name there, it could
#: name an app by Basic credentials (``dapr-app-id:<app>``), which would win over the hop's
#: path at the target sidecar. The target's app gets it back as Authorization, as under daprd.
_HOP_AUTHORIZATION = "dapr-hop-authorization"
_HOP_HEAD_ROOM = 10 << 20  #: Go's default limit on a response head
_PATH_SAFE = "$&+,/:;=@"  #: what Go's URL.EscapedPath leaves as it is, besides letters and digits


@dataclass(frozen=True, slots=True)
class InvokeResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def direct_invoke_error(app_id: str, why: object) -> DaprError:
    return DaprError(
        "ERR_DIRECT_INVOKE",
        f"failed to invoke, id: {app_id}, err: {why}",
        500,
        grpc.StatusCode.INTERNAL,
    )


def forwardable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]


class Invoker:
    def __init__(
        self,
        app_id: str,
        registry: Registry,
        app_channel: AppChannel | None,
        api_token: str | None,
        timeout: float | None = None,
        *,
        namespace: str = "default",
        forwarded: ForwardedHost | None = None,
    ) -> None:
        self.app_id = app_id
        #: daprd's security.CurrentNamespace: NAMESPACE (even empty), "default" when unset.
        self.namespace = namespace
        #: The host the forwarding headers name, found once at startup as daprd does.
        self._forwarded = forwarded or ForwardedHost("", "")
        self.registry = registry
        self.app_channel = app_channel
        self.api_token = api_token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        #: False while app health checks find the app unhealthy: invocations are refused.
        self.app_healthy = True
        #: Policies for invoking each app (``targets.apps``), set once the resources are read.
        self.resiliency = Resiliency()
        self.breakers = Breakers()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
                # No overall limit, like daprd without a resiliency policy; connects are bounded.
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=5),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Content-Type", "Accept", "Accept-Encoding"),
                # The target sidecar held its app's answer to its own --read-buffer-size; this
                # hop (daprd's internal gRPC call) adds no limit of its own.
                max_line_size=_HOP_HEAD_ROOM,
                max_field_size=_HOP_HEAD_ROOM,
                max_headers=_HOP_HEAD_ROOM // 4,
            )
        return self._session

    async def invoke(
        self,
        target: str,
        method: str,
        verb: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        matching: bool = True,
    ) -> InvokeResult:
        """Call ``method`` on app ``target``; raise DaprError ERR_DIRECT_INVOKE if unreachable
        or if daprd would refuse the method (normalized first, as daprd's directMessaging).

        ``matching``: whether a retry policy's status code matching decides which failed
        answers are retried (daprd's HTTP API); gRPC's InvokeService retries every one."""
        try:
            method = normalize_method(method)
        except InvalidMethod as exc:
            why = f"rpc error: code = InvalidArgument desc = invalid method: {exc}"
            raise direct_invoke_error(target, why) from None
        headers = list(headers)
        # The hop from the caller's sidecar runs under the caller's policy, as daprd's CallLocal.
        hop = target == self.app_id and any(k.lower() == FORWARDED_MARK for k, _ in headers)
        policy = Policy() if hop else self.resiliency.endpoint(target)
        once = partial(self._invoke_once, target, method, verb, query, headers, body)
        if policy.empty:
            return await once()
        return await self._invoke_under(policy, target, method, once, matching)

    async def _invoke_under(
        self,
        policy: Policy,
        target: str,
        method: str,
        once: Callable[[], Awaitable[InvokeResult]],
        matching: bool,
    ) -> InvokeResult:
        """daprd's policy runner around an invocation (``sidecar.policy_runner``): each attempt
        bounded by the timeout and counted by the endpoint's circuit breaker (an open one
        refuses it, for good); an error, or an answer outside 200-399 whose code the retry
        policy matches, is retried; when retries run out the last answer (or error) is the
        caller's."""
        endpoint = f"{target}:{method}"
        breaker = None
        if policy.breaker is not None:
            breaker = self.breakers.get(
                policy.breaker, endpoint, group=target, capacity=ENDPOINT_CACHE_SIZE
            )

        async def attempt() -> InvokeResult:
            try:
                answer = await once()
            except DaprError as exc:
                raise _AttemptFailed(exc) from None
            if 200 <= answer.status <= 399:
                return answer
            retried = (
                not matching or policy.retry is None or policy.retry.retries_code(answer.status)
            )
            raise (_AttemptFailed if retried else _AnswerNotRetried)(answer.status, answer)

        try:
            return await run(
                policy,
                breaker,
                attempt,
                _AttemptFailed,
                (_AnswerNotRetried,),
                name=f"endpoint[{target}, {endpoint}]",
            )
        except _AttemptFailed as failed:
            if failed.answer is not None:
                return failed.answer
            if isinstance(failed.why, DaprError):
                raise failed.why from None
            raise direct_invoke_error(target, failed.why) from None  # deadline, open breaker

    async def _invoke_once(
        self,
        target: str,
        method: str,
        verb: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> InvokeResult:
        if target == self.app_id:
            received = [
                ("authorization" if k.lower() == _HOP_AUTHORIZATION else k, v)
                for k, v in forwardable(headers)
            ]
            return await self.call_app(method, verb, query, received, body)
        return await self._forward(target, method, verb, query, forwardable(headers), body)

    async def call_app(
        self, method: str, verb: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> InvokeResult:
        if self.app_channel is None:
            raise direct_invoke_error(self.app_id, "app channel is not initialized")
        if not self.app_healthy:
            raise direct_invoke_error(self.app_id, UNHEALTHY_MESSAGE)
        path = "/" + method.lstrip("/")
        if query:
            path = f"{path}?{query}"
        sent = replaced(headers, "dapr-callee-app-id", self.app_id)
        if not any(k.lower() == FORWARDED_MARK for k, _ in sent):
            sent.append((FORWARDED_MARK, self.app_id))
        try:
            status, reply_headers, reply = await self.app_channel.request(verb, path, sent, body)
        except (AppUnreachableError, TimeoutError) as exc:
            raise direct_invoke_error(self.app_id, f"error invoking app channel: {exc}") from exc
        return InvokeResult(status, forwardable(reply_headers), reply)

    async def _forward(
        self,
        target: str,
        method: str,
        verb: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> InvokeResult:
        # One retry when the connection is refused: the instance may have just restarted
        # elsewhere, and a refused connect never reached the app.
        for attempt in (1, 2):
            try:
                instance = self.registry.resolve(target)
            except AppNotFound as exc:
                raise direct_invoke_error(target, exc) from None
            try:
                return await self._send(instance, target, method, verb, query, headers, body)
            except aiohttp.ClientConnectorError as exc:
                self.registry.forget(target)
                if attempt == 2:
                    raise direct_invoke_error(target, exc) from exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.registry.forget(target)
                raise direct_invoke_error(target, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        instance: Instance,
        target: str,
        method: str,
        verb: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> InvokeResult:
        base = f"http://{instance.address}:{instance.http_port}"
        # Escaped as Go escapes a path; the target sidecar decodes it back to the same method.
        url = f"{base}/v1.0/invoke/{quote(target, safe='')}/method/{quote(method, _PATH_SAFE)}"
        if query:
            url = f"{url}?{query}"
        # Names in lower case, as the target reads them anyway: aiohttp lets a name set in
        # another case replace every earlier value (the caller's X-Forwarded-For, say).
        sent = [
            (_HOP_AUTHORIZATION if k.lower() == "authorization" else k.lower(), v)
            for k, v in headers
            if k.lower() not in (FORWARDED_MARK, CALLER_NAMESPACE)
        ]
        sent += [(k.lower(), v) for k, v in self._forwarded.headers()]
        sent += [(CALLER_NAMESPACE, self.namespace), (FORWARDED_MARK, self.app_id)]
        if self.api_token:
            sent.append(("dapr-api-token", self.api_token))
        request = self._client().request(
            verb, URL(url, encoded=True), headers=sent, data=body, allow_redirects=False
        )
        async with request as response:
            reply = await response.read()
            return InvokeResult(response.status, forwardable(response.headers.items()), reply)


class _AttemptFailed(Exception):
    """One failed attempt under a policy: the app's answer, the sidecar's error, or why the
    runner stopped it (a deadline, an open circuit breaker)."""

    def __init__(self, why: object, answer: InvokeResult | None = None) -> None:
        super().__init__(str(why))
        self.why = why
        self.answer = answer


class _AnswerNotRetried(_AttemptFailed):
    """A failed answer whose code the retry policy's ``matching`` leaves alone."""
