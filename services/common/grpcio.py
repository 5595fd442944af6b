"""gRPC plumbing every service shares: servers with health, reflection and the
internal-token check, and client channels that send the token.

Internal gRPC is not for the world: every call carries `x-stepblend-internal-token`
metadata, and a server refuses a call without the right one (UNAUTHENTICATED).
The health service stays open so that probes need no secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import telemetry

TOKEN_HEADER = "x-stepblend-internal-token"
_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
]


class _TokenCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token.encode()

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong internal token")

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.unary_stream_rpc_method_handler(deny)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(_OPEN_PREFIXES):
            return await continuation(details)
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_HEADER:
                sent = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(sent, self._token):
                    return await continuation(details)
                break
        handler = await continuation(details)
        if handler is not None and handler.response_streaming:
            return self._deny_stream
        return self._deny_unary


def make_server(internal_token: str, max_message_bytes: int | None = None) -> grpc.aio.Server:
    """A server with the tracing and internal-token interceptors; `max_message_bytes`
    bounds what one call may send it (the channels' 32 MiB otherwise)."""
    # Tracing first (when on), so that a refused call is traced too.
    interceptors: list[grpc.aio.ServerInterceptor] = telemetry.server_interceptors()
    if internal_token:
        interceptors.append(_TokenCheck(internal_token))
    options = dict(_CHANNEL_OPTIONS)
    if max_message_bytes is not None:
        options["grpc.max_receive_message_length"] = max_message_bytes
    return grpc.aio.server(interceptors=interceptors, options=list(options.items()))


async def start_server(
    server: grpc.aio.Server, address: str, service_names: Iterable[str]
) -> tuple[int, health.HealthServicer]:
    """Register health and reflection for `service_names`, bind, start; return the port."""
    names = list(service_names)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME, health.SERVICE_NAME], server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return port, health_servicer


def call_metadata(internal_token: str) -> tuple[tuple[str, str], ...]:
    """The metadata every internal call sends. Hot paths pass it as `metadata=`:
    a client interceptor costs an extra task per call in grpc.aio."""
    return ((TOKEN_HEADER, internal_token),) if internal_token else ()


def _with_token(details: grpc.aio.ClientCallDetails, header: tuple[str, str]) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add(*header)
    return details._replace(metadata=metadata)


# grpc.aio files an interceptor under the first call kind it implements, so each
# kind needs a class of its own.
class _AddTokenUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._header = (TOKEN_HEADER, token)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._header), request)


class _AddTokenStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._header = (TOKEN_HEADER, token)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._header), request)


def channel(address: str, internal_token: str = "") -> grpc.aio.Channel:
    """A persistent channel to an internal service. With `internal_token`, every
    call sends it (convenient for tools and tests); without, calls pass
    `metadata=call_metadata(token)` themselves."""
    interceptors: list[Any] = (
        [_AddTokenUnary(internal_token), _AddTokenStream(internal_token)] if internal_token else []
    )
    return grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS, interceptors=interceptors)
