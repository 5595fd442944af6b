"""gRPC plumbing every service shares: servers with health, reflection and the
internal-token check, and client channels that send the token.

Internal gRPC is not for the world: every call carries `x-stepblend-internal-token`
metadata, and a server refuses a call without a token it knows (UNAUTHENTICATED).
The health service stays open so that probes need no secret.

Who may call what (least privilege). `STEPBLEND_INTERNAL_TOKEN` is the operator's
token (the CLI's): it may call every method. `STEPBLEND_CALLER_TOKENS` gives other
callers tokens of their own (a JSON object, caller → token; `stepblend up` and the
Kubernetes manifests give the gateway one), and such a caller may call only the
methods `CALLER_METHODS` lists for it (PERMISSION_DENIED otherwise): the gateway can
route, execute, admit, sign up and manage an account's own keys, but not change a
plan, disable an account or connect an operator's vendor. A caller without a row may
call nothing. With no caller tokens, the internal token is the only one, as before.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import telemetry
from services.common.tls import InternalTls

TOKEN_HEADER = "x-stepblend-internal-token"
_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

#: The methods each non-operator caller may call; everything else is the operator's.
CALLER_METHODS: dict[str, frozenset[str]] = {
    "gateway": frozenset(
        {
            "/stepblend.v1.Router/Route",
            "/stepblend.v1.Router/RouteStream",
            "/stepblend.v1.Router/ListModels",
            "/stepblend.v1.Providers/Execute",
            "/stepblend.v1.Providers/Complete",
            "/stepblend.v1.Providers/CompleteStream",
            "/stepblend.v1.Keys/Put",
            "/stepblend.v1.Keys/Delete",
            "/stepblend.v1.Keys/List",
            "/stepblend.v1.Keys/Connected",
            "/stepblend.v1.Billing/CreateAccount",
            "/stepblend.v1.Billing/GetAccount",
            "/stepblend.v1.Billing/VerifyPassword",
            "/stepblend.v1.Billing/Admit",
            "/stepblend.v1.Billing/Lease",
            "/stepblend.v1.Billing/ReturnLease",
            "/stepblend.v1.Billing/ListUsage",
            "/stepblend.v1.ApiKeys/Create",
            "/stepblend.v1.ApiKeys/List",
            "/stepblend.v1.ApiKeys/Revoke",
            "/stepblend.v1.ApiKeys/Verify",
            "/stepblend.v1.ApiKeys/SetBudget",
        }
    ),
}
_OPERATOR = "operator"

#: Both ends ping an idle connection this often, so that a dead peer is noticed.
KEEPALIVE_MS = 30_000
#: A server asks a client to move to a new connection (GOAWAY) once theirs is this old
#: (gRPC adds ±10% of jitter). A Kubernetes Service balances connections, not
#: calls: this is how replicas added since (a scale-out) take their share. Calls in
#: flight are never cut (no grace limit); new ones go on the new connection.
MAX_CONNECTION_AGE_S = 120.0


def _channel_options() -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ]


def _server_options() -> dict[str, int]:
    """A server accepts its callers' keepalive pings. gRPC's default accepts one per
    5 minutes on a connection sending no data, and answers the third too soon with
    GOAWAY `too_many_pings`, closing the connection. That broke the gateway's
    long-lived call streams (services/common/mux.py) after about 90 s idle: the next
    call on the stream failed with UNAVAILABLE, a 503 to the client."""
    return {
        **dict(_channel_options()),
        "grpc.http2.min_ping_interval_without_data_ms": KEEPALIVE_MS // 3,
        "grpc.max_connection_age_ms": int(MAX_CONNECTION_AGE_S * 1000),
    }


def _denials(code: grpc.StatusCode, message: str) -> tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]:
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(deny), grpc.unary_stream_rpc_method_handler(deny)


class _TokenCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, operator_token: str, caller_tokens: Mapping[str, str]) -> None:
        tokens = {caller: token for caller, token in caller_tokens.items() if token}
        if operator_token:
            tokens[_OPERATOR] = operator_token
        self._tokens = [(caller, token.encode()) for caller, token in tokens.items()]
        self._unknown = _denials(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong internal token")
        self._forbidden = _denials(grpc.StatusCode.PERMISSION_DENIED, "this caller may not call this method")

    def _caller(self, details: grpc.HandlerCallDetails) -> str | None:
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_HEADER:
                sent = value.encode() if isinstance(value, str) else value
                # Every token compared, in constant time: which one matched stays secret.
                matches = [caller for caller, token in self._tokens if hmac.compare_digest(sent, token)]
                return matches[0] if matches else None
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(_OPEN_PREFIXES):
            return await continuation(details)
        caller = self._caller(details)
        if caller == _OPERATOR or (caller is not None and details.method in CALLER_METHODS.get(caller, ())):
            return await continuation(details)
        handler = await continuation(details)
        unary, stream = self._unknown if caller is None else self._forbidden
        return stream if handler is not None and handler.response_streaming else unary


def make_server(
    internal_token: str, max_message_bytes: int | None = None, caller_tokens: Mapping[str, str] | None = None
) -> grpc.aio.Server:
    """A server with the tracing and internal-token interceptors; `max_message_bytes`
    bounds what one call may send it (the channels' 32 MiB otherwise); `caller_tokens`
    admit other callers to their `CALLER_METHODS`."""
    # Tracing first (when on), so that a refused call is traced too.
    interceptors: list[grpc.aio.ServerInterceptor] = telemetry.server_interceptors()
    if internal_token or caller_tokens:
        interceptors.append(_TokenCheck(internal_token, caller_tokens or {}))
    options = _server_options()
    if max_message_bytes is not None:
        options["grpc.max_receive_message_length"] = max_message_bytes
    return grpc.aio.server(interceptors=interceptors, options=list(options.items()))


async def start_server(
    server: grpc.aio.Server,
    address: str,
    service_names: Iterable[str],
    tls: InternalTls | None = None,
    health_address: str | None = None,
) -> tuple[int, health.HealthServicer]:
    """Register health and reflection for `service_names`, bind (TLS only when `tls`
    has this service's certificate), start; return the port. With TLS, `health_address`
    is a plaintext port for probes; everything but health there still needs a token,
    and network policies keep other pods off it."""
    names = list(service_names)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME, health.SERVICE_NAME], server)
    credentials = tls.server_credentials() if tls else None
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    if credentials is not None and health_address and server.add_insecure_port(health_address) == 0:
        raise RuntimeError(f"cannot listen on {health_address}")
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


def channel(address: str, internal_token: str = "", tls: InternalTls | None = None) -> grpc.aio.Channel:
    """A persistent channel to an internal service, TLS when `tls` has a CA. With
    `internal_token`, every call sends it (convenient for tools and tests); without,
    calls pass `metadata=call_metadata(token)` themselves."""
    interceptors: list[Any] = (
        [_AddTokenUnary(internal_token), _AddTokenStream(internal_token)] if internal_token else []
    )
    credentials = tls.channel_credentials() if tls else None
    if credentials is not None:
        return grpc.aio.secure_channel(address, credentials, options=_channel_options(), interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=_channel_options(), interceptors=interceptors)
