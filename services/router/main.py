"""Runs the router: load the catalog, serve `stepblend.v1.Router`, fold usage events.

`stepblend serve router` (and `stepblend up`) call `serve`, after setting up logging.

Environment (all optional):
  STEPBLEND_CATALOG_FILE               rows added to the catalog packaged beside this
                                       module (a file with `extends = false`: the whole
                                       catalog)
  STEPBLEND_VENDORS_FILE               the operator's own vendors, which catalog rows
                                       may name (services/providers/vendors_file.py)
  STEPBLEND_NATS_URL                   where usage events come from (common settings)
  STEPBLEND_ROUTER_BREAKER_FAILURES    consecutive failures that open a provider:model's
                                       circuit (default 5)
  STEPBLEND_ROUTER_BREAKER_MIN_ACCOUNTS  distinct accounts whose failures it takes to open
                                       a circuit (2: one tenant cannot open it for others)
  STEPBLEND_ROUTER_BREAKER_COOLDOWN_S  seconds a circuit stays open before a probe
                                       (default 30)
  STEPBLEND_ROUTER_STATS_REPLAY_S      seconds of usage history a starting replica folds
                                       (default 300)

The gRPC server starts first and never waits for NATS: while usage events are
unreachable the router routes on the catalog's priors and whatever it has folded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from services.common import mux_server
from services.common.config import Settings
from services.common.grpcio import make_server, start_server
from services.common.tls import InternalTls
from services.common.vendors_file import operator_vendor_names
from services.router.breaker import BreakerConfig
from services.router.catalog import KNOWN_PROVIDERS, Catalog, load_catalog
from services.router.consumer import ConsumerOptions, StatsConsumer
from services.router.servicer import RouterServicer
from services.router.settings import RouterSettings
from services.router.stats import StatsBook
from services.router.strategies import STRATEGY_NAMES
from stepblend.v1 import router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name
#: Seconds in-flight calls get to finish when the router stops.
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class RouterOptions:
    """The router's own settings (beyond the common ones), read once at start."""

    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    consumer: ConsumerOptions = field(default_factory=ConsumerOptions)
    catalog_file: str = ""
    vendors_file: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RouterOptions:
        """Read the router's variables (RouterSettings); a malformed value stops the router."""
        own = RouterSettings.from_env(env)
        return cls(
            breaker=own.breaker(),
            consumer=own.consumer(),
            catalog_file=own.catalog_file,
            vendors_file=own.vendors_file,
        )


def catalog_from_env(options: RouterOptions | None = None) -> Catalog:
    """The packaged catalog, extended by STEPBLEND_CATALOG_FILE's rows, which may name
    STEPBLEND_VENDORS_FILE's vendors.

    Raises `CatalogError` on a bad catalog, `VendorsFileError` on a bad vendors file:
    the router must not start with either.
    """
    options = options or RouterOptions.from_env()
    path, vendors_file = options.catalog_file.strip(), options.vendors_file.strip()
    vendors = operator_vendor_names(Path(vendors_file), KNOWN_PROVIDERS) if vendors_file else frozenset()
    return load_catalog(Path(path) if path else None, reserved_names=STRATEGY_NAMES, vendors=vendors)


async def start(
    settings: Settings, catalog: Catalog, book: StatsBook | None = None, draining: asyncio.Event | None = None
) -> tuple[grpc.aio.Server, int]:
    """Build and start the gRPC server; return it and the port it listens on. Its call
    streams drain when `draining` is set (mux_server.stop_server)."""
    server = make_server(settings.internal_token, caller_tokens=settings.caller_tokens)
    servicer = RouterServicer(catalog, book, book, draining)
    # The generated registration function carries no annotations.
    router_pb2_grpc.add_RouterServicer_to_server(servicer, server)
    tls = InternalTls.from_settings(settings)
    port, _health = await start_server(
        server, f"{settings.host}:{settings.port}", [SERVICE_NAME], tls, settings.health_address
    )
    return server, port


async def serve(settings: Settings, options: RouterOptions | None = None) -> None:
    """Serve until cancelled; then stop with a grace period and re-raise."""
    options = options or RouterOptions.from_env()
    catalog = catalog_from_env(options)
    book = StatsBook(catalog, breaker=options.breaker)
    draining = asyncio.Event()
    server, port = await start(settings, catalog, book, draining)
    consumer_options = dataclasses.replace(
        options.consumer, stream_replicas=settings.nats_stream_replicas, tls=InternalTls.from_settings(settings)
    )
    consumer = StatsConsumer(settings.nats_url, book, consumer_options)
    consuming = asyncio.create_task(consumer.run(), name="router-usage-events")
    log.info(
        "router listening on %s:%d (catalog %s, %d models; %s)",
        settings.host,
        port,
        catalog.version,
        len(catalog.models),
        ", ".join(f"{f.name}={getattr(options.breaker, f.name)}" for f in dataclasses.fields(options.breaker)),
    )
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        # Shielded so that a second cancellation cannot cut the graceful stop short.
        await asyncio.shield(_stop(server, draining, consumer, consuming))
        raise


async def _stop(
    server: grpc.aio.Server, draining: asyncio.Event, consumer: StatsConsumer, consuming: asyncio.Task[None]
) -> None:
    consumer.stop()
    # It may be inside a connect that retries until NATS answers: do not wait for that.
    consuming.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consuming
    await mux_server.stop_server(server, STOP_GRACE_S, draining)
