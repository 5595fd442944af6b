"""Runs the router: load the catalog, serve `stepblend.v1.Router`, fold usage events.

`stepblend serve router` (and `stepblend up`) call `serve`, after setting up logging.

Environment (all optional):
  STEPBLEND_CATALOG_FILE               the catalog; the one packaged beside this module
                                       when unset
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
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from services.common.config import Settings
from services.common.grpcio import make_server, start_server
from services.router.breaker import BreakerConfig
from services.router.catalog import Catalog, load_catalog
from services.router.consumer import ConsumerOptions, StatsConsumer
from services.router.servicer import RouterServicer
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RouterOptions:
        """Read the STEPBLEND_ROUTER_* variables; a malformed value stops the router."""
        source = os.environ if env is None else env
        breaker = BreakerConfig(
            consecutive_failures=int(
                _number(source, "STEPBLEND_ROUTER_BREAKER_FAILURES", BreakerConfig.consecutive_failures)
            ),
            cooldown_s=_number(source, "STEPBLEND_ROUTER_BREAKER_COOLDOWN_S", BreakerConfig.cooldown_s),
            min_accounts=int(_number(source, "STEPBLEND_ROUTER_BREAKER_MIN_ACCOUNTS", BreakerConfig.min_accounts)),
        )
        replay = _number(source, "STEPBLEND_ROUTER_STATS_REPLAY_S", ConsumerOptions.replay_s)
        consumer = ConsumerOptions(replay_s=replay, max_age_s=max(ConsumerOptions.max_age_s, replay))
        return cls(breaker=breaker, consumer=consumer)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not 0 <= value < 10**7:
        raise ValueError(f"{name} must be a non-negative number, got {text!r}")
    return value


def catalog_from_env() -> Catalog:
    """The catalog named by STEPBLEND_CATALOG_FILE, or the packaged one.

    Raises `CatalogError` on a bad file: the router must not start with it.
    """
    path = os.environ.get("STEPBLEND_CATALOG_FILE", "").strip()
    return load_catalog(Path(path) if path else None, reserved_names=STRATEGY_NAMES)


async def start(settings: Settings, catalog: Catalog, book: StatsBook | None = None) -> tuple[grpc.aio.Server, int]:
    """Build and start the gRPC server; return it and the port it listens on."""
    server = make_server(settings.internal_token, caller_tokens=settings.caller_tokens)
    servicer = RouterServicer(catalog, book, book)
    # The generated registration function carries no annotations.
    router_pb2_grpc.add_RouterServicer_to_server(servicer, server)
    port, _health = await start_server(server, f"{settings.host}:{settings.port}", [SERVICE_NAME])
    return server, port


async def serve(settings: Settings, options: RouterOptions | None = None) -> None:
    """Serve until cancelled; then stop with a grace period and re-raise."""
    catalog = catalog_from_env()
    options = options or RouterOptions.from_env()
    book = StatsBook(catalog, breaker=options.breaker)
    server, port = await start(settings, catalog, book)
    consumer = StatsConsumer(settings.nats_url, book, options.consumer)
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
        await asyncio.shield(_stop(server, consumer, consuming))
        raise


async def _stop(server: grpc.aio.Server, consumer: StatsConsumer, consuming: asyncio.Task[None]) -> None:
    consumer.stop()
    # It may be inside a connect that retries until NATS answers: do not wait for that.
    consuming.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consuming
    await server.stop(STOP_GRACE_S)
