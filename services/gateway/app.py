"""The gateway's FastAPI application: lifespan wiring, middleware, error rendering.

Routes live in routes.py; everything they need is built here, once, and kept on
`app.state.deps`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import grpc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common import events, telemetry
from services.common.cache import TtlCache
from services.common.config import Settings
from services.common.grpcio import call_metadata, channel, make_server, start_server
from services.common.mux import MuxClient
from services.common.tls import InternalTls
from stepblend.v1 import (
    billing_pb2_grpc,
    chat_pb2,
    chat_pb2_grpc,
    providers_pb2,
    providers_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)

from . import accounts
from .apikeys import ApiKeyBook
from .auth import Keyring, Verifier
from .caches import ModelList
from .chat import ChatServicer
from .deps import Deps
from .errors import ApiError
from .fairness import AccountConcurrencyLimit, InFlight
from .invalidation import Invalidations
from .leases import Leases
from .observe import RequestTelemetry
from .outbox import Outbox
from .render import JsonResponse
from .routes import health, router
from .schemas import MAX_BODY_BYTES
from .settings import GatewaySettings
from .tokens import o200k_base

log = logging.getLogger(__name__)

ACCOUNT_TTL_S = 30.0
CONNECTED_TTL_S = 30.0
OUTBOX_DRAIN_S = 10.0
LEASES_RETURN_S = 5.0
# The unary methods whose calls go as messages on a stream (their spans' names).
ROUTE = "/stepblend.v1.Router/Route"
COMPLETE = "/stepblend.v1.Providers/Complete"
GRACEFUL_CHAT_S = 30.0


class RequestIdMiddleware:
    """Give every request StepBlend's own id and send it back as `x-request-id` and
    as `request-id` (where the anthropic SDKs read it), errors included. A client's
    `x-request-id` is only recorded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        headers = [(b"x-request-id", request_id.encode()), (b"request-id", b"req_" + request_id.encode())]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_id)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else None
    message = "Unknown route." if exc.status_code == 404 else str(exc.detail)
    return ApiError(exc.status_code, message, "invalid_request_error", code).response()


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
    param = ".".join(str(p) for p in first["loc"] if p != "body") or None
    return ApiError(400, f"Invalid value for '{param}': {first['msg']}.", param=param).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", "")})
    return ApiError(500, "StepBlend hit an internal error.", "api_error", "internal_error").response()


async def _start_chat(deps: Deps) -> grpc.aio.Server:
    """The gRPC Chat API on its own port, sharing this process's clients and caches.
    Callers authenticate with their JWT, not the internal token."""
    # A chat request over gRPC may be as large as one over HTTP, no larger.
    server = make_server(internal_token="", max_message_bytes=MAX_BODY_BYTES)
    chat_pb2_grpc.add_ChatServicer_to_server(ChatServicer(deps), server)
    port, _ = await start_server(
        server,
        f"{deps.settings.host}:{deps.settings.chat_port}",
        [chat_pb2.DESCRIPTOR.services_by_name["Chat"].full_name],
    )
    log.info("gRPC chat API listening on %s:%d", deps.settings.host, port)
    return server


def create_app(settings: Settings, gateway: GatewaySettings | None = None) -> FastAPI:
    """The app; `gateway` defaults to the environment's, read here, once."""
    gateway = gateway or GatewaySettings.from_env()
    in_flight = InFlight(gateway.max_concurrent_per_account)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keyring = Keyring.from_settings(settings)
        tls = InternalTls.from_settings(settings)
        nc = await events.connect(settings.nats_url, "gateway", tls)
        js = nc.jetstream()
        await events.ensure_streams(js, settings.nats_stream_replicas)
        outbox = Outbox(js)
        outbox.start()
        metadata = call_metadata(settings.internal_token)
        channels = {
            "router": channel(settings.router_addr, tls=tls),
            "providers": channel(settings.providers_addr, tls=tls),
            "billing": channel(settings.billing_addr, tls=tls),
        }
        router_ch, providers_ch, billing_ch = channels["router"], channels["providers"], channels["billing"]
        keys = providers_pb2_grpc.KeysStub(providers_ch)
        billing = billing_pb2_grpc.BillingStub(billing_ch)
        apikeys = ApiKeyBook(settings.api_key_pepper, billing_pb2_grpc.ApiKeysStub(billing_ch), metadata)
        router_stub, providers_stub = (
            router_pb2_grpc.RouterStub(router_ch),
            providers_pb2_grpc.ProvidersStub(providers_ch),
        )
        streams = gateway.call_streams
        # Routing is a pure decision: a Route call cut by its stream is asked again.
        route_calls = (
            MuxClient(router_stub.RouteStream, ROUTE, router_pb2.RouteResponse.FromString, metadata, idempotent=True)
            if streams
            else None
        )
        complete_calls = (
            MuxClient(providers_stub.CompleteStream, COMPLETE, providers_pb2.ExecuteEvents.FromString, metadata)
            if streams
            else None
        )
        leases = (
            Leases(billing, metadata, gateway=f"{socket.gethostname()}:{os.getpid()}", idle_s=gateway.lease_idle_s)
            if gateway.leases
            else None
        )
        deps = Deps(
            settings=settings,
            gateway=gateway,
            in_flight=in_flight,
            leases=leases,
            keyring=keyring,
            verifier=Verifier(keyring, apikeys.load if apikeys.enabled else None),
            encoding=o200k_base(),
            router=router_stub,
            providers=providers_stub,
            route_calls=route_calls,
            complete_calls=complete_calls,
            keys=keys,
            billing=billing,
            apikeys=apikeys,
            accounts=TtlCache(partial(accounts.load_status, billing, metadata), ACCOUNT_TTL_S),
            connected=TtlCache(partial(accounts.load_connected, keys, metadata), CONNECTED_TTL_S),
            outbox=outbox,
            nats=nc,
            channels=channels,
            models=ModelList(),
            metadata=metadata,
            telemetry=RequestTelemetry.create(),
        )
        invalidations = Invalidations(deps)
        await invalidations.subscribe()
        app.state.deps = deps
        app.state.invalidations = invalidations
        chat_server = await _start_chat(deps) if settings.chat_port is not None else None
        ticking = asyncio.ensure_future(leases.run()) if leases is not None else None
        try:
            yield
        finally:
            if chat_server is not None:
                await chat_server.stop(grace=GRACEFUL_CHAT_S)
            if ticking is not None and leases is not None:
                ticking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticking
                # After the requests in flight have ended: their slots stay held, the rest come back now.
                await leases.close_all(LEASES_RETURN_S)
            for calls in (route_calls, complete_calls):
                if calls is not None:
                    await calls.close()
            await outbox.drain(OUTBOX_DRAIN_S)
            for ch in channels.values():
                await ch.close()
            await nc.drain()

    app = FastAPI(
        title="StepBlend",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JsonResponse,
        docs_url=None,
        redoc_url=None,
    )
    # Added first, so it runs inside RequestIdMiddleware: its 429s get an x-request-id too.
    app.add_middleware(AccountConcurrencyLimit, in_flight=in_flight)
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(router, prefix="/api/v1")
    app.include_router(router, prefix="/v1", include_in_schema=False)
    app.include_router(health)
    telemetry.instrument_fastapi(app)
    return app
