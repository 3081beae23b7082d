"""daprd's gRPC API (``dapr.proto.runtime.v1.Dapr``) on grpc.aio, the SDK's hot path.

Each method converts the proto to the runtime's calls and back; errors leave as daprd's rich
status (``grpc-status-details-bin``). Methods this sidecar does not offer answer UNIMPLEMENTED
naming the method.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2, secret_pb2, state_pb2
from google.protobuf import any_pb2, empty_pb2

from sidecar import invoke_status
from sidecar.api_logging import GrpcApiLogging
from sidecar.errors import DaprError, abort
from sidecar.grpc_streaming import subscribe_topic_events
from sidecar.publishing import PublishEntry, publish_failed, pubsub_name_empty
from sidecar.state.base import Concurrency, Consistency, DeleteRequest, SetRequest
from sidecar.state.errors import unsupported_operation

if TYPE_CHECKING:
    from sidecar.runtime import Runtime

_EMPTY = empty_pb2.Empty()
_NO_METADATA: Mapping[str, str] = {}
_OPTIONS = common_pb2.StateOptions
_CONCURRENCIES = {
    _OPTIONS.CONCURRENCY_FIRST_WRITE: Concurrency.FIRST_WRITE.value,
    _OPTIONS.CONCURRENCY_LAST_WRITE: Concurrency.LAST_WRITE.value,
}
_CONSISTENCIES = {
    _OPTIONS.CONSISTENCY_EVENTUAL: Consistency.EVENTUAL.value,
    _OPTIONS.CONSISTENCY_STRONG: Consistency.STRONG.value,
}
_VERBS = {v: k for k, v in common_pb2.HTTPExtension.Verb.items()}
IMPLEMENTED = frozenset(
    {
        "GetState",
        "GetBulkState",
        "SaveState",
        "DeleteState",
        "DeleteBulkState",
        "ExecuteStateTransaction",
        "QueryStateAlpha1",
        "PublishEvent",
        "BulkPublishEvent",
        "BulkPublishEventAlpha1",
        "SubscribeTopicEventsAlpha1",
        "InvokeService",
        "GetMetadata",
        "SetMetadata",
        "GetSecret",
        "GetBulkSecret",
        "Shutdown",
    }
)


def _metadata(values: Mapping[str, str]) -> Mapping[str, str]:
    return dict(values) if values else _NO_METADATA


def _etag(item: Any) -> str | None:
    return item.etag.value if item.HasField("etag") and item.etag.value else None


def _concurrency(options: Any) -> str:
    """daprd's stateConcurrencyToString: unspecified (or an unknown number) is ""."""
    return _CONCURRENCIES.get(options.concurrency, "")


def _consistency(options: Any) -> str:
    return _CONSISTENCIES.get(options.consistency, "")


def _set_request(item: common_pb2.StateItem) -> SetRequest:
    return SetRequest(
        key=item.key,
        value=item.value,
        etag=_etag(item),
        metadata=_metadata(item.metadata),
        concurrency=_concurrency(item.options),
        consistency=_consistency(item.options),
    )


def _delete_request(item: common_pb2.StateItem) -> DeleteRequest:
    return DeleteRequest(
        key=item.key,
        etag=_etag(item),
        metadata=_metadata(item.metadata),
        concurrency=_concurrency(item.options),
        consistency=_consistency(item.options),
    )


class DaprServicer(dapr_pb2_grpc.DaprServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def GetState(self, request: Any, context: Any) -> Any:
        try:
            found = await self.rt.state.get(
                request.store_name, request.key, _metadata(request.metadata)
            )
        except DaprError as err:
            await abort(context, err)
        if found is None:
            return state_pb2.GetStateResponse()
        return state_pb2.GetStateResponse(
            data=found.data, etag=found.etag or "", metadata=found.metadata
        )

    async def GetBulkState(self, request: Any, context: Any) -> Any:
        try:
            items = await self.rt.state.bulk_get(
                request.store_name, list(request.keys), _metadata(request.metadata)
            )
        except DaprError as err:
            await abort(context, err)
        response = state_pb2.GetBulkStateResponse()
        for item in items:
            found = item.response
            if found is None:
                response.items.add(key=item.key, error=item.error)
            else:
                response.items.add(
                    key=item.key, data=found.data, etag=found.etag or "", metadata=found.metadata
                )
        return response

    async def SaveState(self, request: Any, context: Any) -> Any:
        try:
            await self.rt.state.save(request.store_name, [_set_request(s) for s in request.states])
        except DaprError as err:
            await abort(context, err)
        return _EMPTY

    async def DeleteState(self, request: Any, context: Any) -> Any:
        try:
            await self.rt.state.delete(
                request.store_name,
                request.key,
                _etag(request),
                _metadata(request.metadata),
                _concurrency(request.options),
                _consistency(request.options),
            )
        except DaprError as err:
            await abort(context, err)
        return _EMPTY

    async def DeleteBulkState(self, request: Any, context: Any) -> Any:
        try:
            await self.rt.state.delete_bulk(
                request.store_name, [_delete_request(s) for s in request.states]
            )
        except DaprError as err:
            await abort(context, err)
        return _EMPTY

    async def ExecuteStateTransaction(self, request: Any, context: Any) -> Any:
        try:
            operations: list[SetRequest | DeleteRequest] = []
            for op in request.operations:
                if op.operationType == "upsert":
                    operations.append(_set_request(op.request))
                elif op.operationType == "delete":
                    operations.append(_delete_request(op.request))
                else:
                    raise unsupported_operation(op.operationType)
            await self.rt.transact(
                request.storeName,
                operations,
                _metadata(request.metadata),
                _traceparent(context),
            )
        except DaprError as err:
            await abort(context, err)
        return _EMPTY

    async def QueryStateAlpha1(self, request: Any, context: Any) -> Any:
        try:
            result = await self.rt.state.query(
                request.store_name, request.query.encode(), _metadata(request.metadata)
            )
        except DaprError as err:
            await abort(context, err)
        response = state_pb2.QueryStateResponse(token=result.token)
        for item in result.results:
            response.results.add(key=item.key, data=item.data, etag=item.etag or "")
        return response

    async def PublishEvent(self, request: Any, context: Any) -> Any:
        try:
            if not request.pubsub_name:
                raise pubsub_name_empty(request.metadata)
            await self.rt.publisher.publish(
                request.pubsub_name,
                request.topic,
                request.data,
                request.data_content_type,
                _metadata(request.metadata),
                traceparent=_traceparent(context),
            )
        except DaprError as err:
            await abort(context, err)
        return _EMPTY

    async def BulkPublishEvent(self, request: Any, context: Any) -> Any:
        # An empty protobuf map is Go's nil map: such an entry gets no request metadata.
        entries = [
            PublishEntry(e.entry_id, e.event, e.content_type, dict(e.metadata) or None)
            for e in request.entries
        ]
        try:
            if not request.pubsub_name:
                raise pubsub_name_empty(request.metadata)
            failed = await self.rt.publisher.bulk_publish(
                request.pubsub_name, request.topic, entries, _metadata(request.metadata)
            )
            if failed:
                # daprd answers the gRPC call with an error and no entries when any entry
                # failed (HTTP lists them): pkg/api/grpc/grpc.go bulkPublishEvent.
                raise publish_failed(
                    request.pubsub_name, request.topic, RuntimeError(failed[0].error)
                )
        except DaprError as err:
            await abort(context, err)
        return pubsub_pb2.BulkPublishResponse()

    BulkPublishEventAlpha1 = BulkPublishEvent

    async def SubscribeTopicEventsAlpha1(self, request_iterator: Any, context: Any) -> None:
        await subscribe_topic_events(self.rt, context)

    async def InvokeService(self, request: Any, context: Any) -> Any:
        message = request.message
        verb = _VERBS.get(message.http_extension.verb, "POST")
        headers = [("content-type", message.content_type)] if message.content_type else []
        try:
            result = await self.rt.invoker.invoke(
                request.id,
                message.method,
                "POST" if verb == "NONE" else verb,
                message.http_extension.querystring,
                headers,
                message.data.value,
                matching=False,  # daprd: an HTTP error here is a plain gRPC error, always retried
            )
        except DaprError as err:
            await abort(context, err)
        # daprd sends the app's headers and status as header metadata, error or not.
        await context.send_initial_metadata(
            invoke_status.response_metadata(result.status, result.headers)
        )
        code = invoke_status.grpc_code(result.status)
        if code is not grpc.StatusCode.OK:
            status = invoke_status.error_status(result.status, result.body)
            await context.abort(
                code,
                status.message,
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            )
        content_type = next((v for k, v in result.headers if k.lower() == "content-type"), "")
        return common_pb2.InvokeResponse(
            data=any_pb2.Any(value=result.body), content_type=content_type
        )

    async def GetSecret(self, request: Any, context: Any) -> Any:
        try:
            data = await self.rt.secrets.get(
                request.store_name, request.key, _metadata(request.metadata)
            )
        except DaprError as err:
            await abort(context, err)
        return secret_pb2.GetSecretResponse(data=data)

    async def GetBulkSecret(self, request: Any, context: Any) -> Any:
        try:
            found = await self.rt.secrets.bulk_get(request.store_name, _metadata(request.metadata))
        except DaprError as err:
            await abort(context, err)
        response = secret_pb2.GetBulkSecretResponse()
        for name, data in found.items():
            response.data[name].secrets.update(data)
        return response

    async def GetMetadata(self, request: Any, context: Any) -> Any:
        return self.rt.metadata()

    async def SetMetadata(self, request: Any, context: Any) -> Any:
        self.rt.extended_metadata[request.key] = request.value
        return _EMPTY

    async def Shutdown(self, request: Any, context: Any) -> Any:
        asyncio.get_running_loop().call_later(0.05, self.rt.request_shutdown)
        return _EMPTY


def _traceparent(context: Any) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent":
            return str(value)
    return ""


def _unimplemented(name: str) -> Callable[..., Awaitable[Any]]:
    async def method(self: Any, request: Any, context: Any) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{name} is not supported by the local sidecar (a Python stand-in for daprd)",
        )

    return method


for _name in dir(dapr_pb2_grpc.DaprServicer):
    if _name[:1].isupper() and _name not in IMPLEMENTED:
        setattr(DaprServicer, _name, _unimplemented(_name))


class ApiTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """``dapr-api-token`` metadata required on every call (pkg/api/grpc/auth.go)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        given = [v for k, v in details.invocation_metadata or () if k == "dapr-api-token"]
        handler = await continuation(details)
        if given and given[0] == self.token:
            return handler
        message = (
            "authentication error: api token mismatch"
            if given
            else "missing api token in request metadata"
        )
        return _denied(handler, message)


def _denied(handler: Any, message: str) -> Any:
    async def deny(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        factory = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        factory = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        factory = grpc.unary_stream_rpc_method_handler
    else:
        factory = grpc.unary_unary_rpc_method_handler
    return factory(
        deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def create_grpc_server(runtime: Runtime) -> grpc.aio.Server:
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if runtime.config.api_token:
        interceptors.append(ApiTokenInterceptor(runtime.config.api_token))
    if runtime.config.api_logging:  # after authentication, as in daprd
        interceptors.append(GrpcApiLogging())
    # daprd gives grpc-go --max-body-size for both directions; 0 or less is no limit here.
    limit = runtime.config.max_body_bytes if runtime.config.max_body_bytes > 0 else -1
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    dapr_pb2_grpc.add_DaprServicer_to_server(DaprServicer(runtime), server)  # type: ignore[no-untyped-call]
    return server
