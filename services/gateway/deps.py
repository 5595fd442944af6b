"""Everything a request handler needs, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from nats.aio.client import Client as NATS

from services.common.cache import TtlCache
from services.common.config import Settings
from services.common.mux import MuxClient
from stepblend.v1 import billing_pb2_grpc, providers_pb2, providers_pb2_grpc, router_pb2, router_pb2_grpc

from .apikeys import ApiKeyBook
from .auth import Keyring, Verifier
from .caches import AccountStatus, ModelList
from .fairness import InFlight
from .features import Encoding
from .leases import Leases
from .observe import RequestTelemetry
from .outbox import Outbox
from .rpc import Metadata
from .settings import GatewaySettings


@dataclass
class Deps:
    settings: Settings
    gateway: GatewaySettings
    keyring: Keyring
    verifier: Verifier
    encoding: Encoding
    router: router_pb2_grpc.RouterStub
    providers: providers_pb2_grpc.ProvidersStub
    keys: providers_pb2_grpc.KeysStub
    billing: billing_pb2_grpc.BillingStub
    apikeys: ApiKeyBook
    accounts: TtlCache[str, AccountStatus]
    connected: TtlCache[str, tuple[str, ...]]
    outbox: Outbox
    nats: NATS
    channels: dict[str, grpc.aio.Channel]
    models: ModelList
    metadata: Metadata
    in_flight: InFlight
    # None when STEPBLEND_LEASES is off: every request is one Admit.
    leases: Leases | None = None
    # Route and Complete as messages on a long-lived stream each; None when
    # STEPBLEND_CALL_STREAMS is off: a unary call each.
    route_calls: MuxClient[router_pb2.RouteResponse] | None = None
    complete_calls: MuxClient[providers_pb2.ExecuteEvents] | None = None
    telemetry: RequestTelemetry = field(default_factory=lambda: RequestTelemetry(None))
