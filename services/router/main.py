"""Runs the router: load the catalog, serve `stepblend.v1.Router` until cancelled.

`stepblend serve router` (and `stepblend up`) call `serve`, after setting up logging.

The catalog is `STEPBLEND_CATALOG_FILE` when set, else the one packaged beside this
module. No NATS yet: live statistics from usage events come later.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import grpc

from services.common.config import Settings
from services.common.grpcio import make_server, start_server
from services.router.catalog import Catalog, load_catalog
from services.router.servicer import RouterServicer
from services.router.strategies import STRATEGY_NAMES
from stepblend.v1 import router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name
#: Seconds in-flight calls get to finish when the router stops.
STOP_GRACE_S = 5.0


def catalog_from_env() -> Catalog:
    """The catalog named by STEPBLEND_CATALOG_FILE, or the packaged one.

    Raises `CatalogError` on a bad file: the router must not start with it.
    """
    path = os.environ.get("STEPBLEND_CATALOG_FILE", "").strip()
    return load_catalog(Path(path) if path else None, reserved_names=STRATEGY_NAMES)


async def start(settings: Settings, catalog: Catalog) -> tuple[grpc.aio.Server, int]:
    """Build and start the gRPC server; return it and the port it listens on."""
    server = make_server(settings.internal_token)
    # The generated registration function carries no annotations.
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(catalog), server)  # type: ignore[no-untyped-call]
    port, _health = await start_server(server, f"{settings.host}:{settings.port}", [SERVICE_NAME])
    return server, port


async def serve(settings: Settings) -> None:
    """Serve until cancelled; then stop with a grace period and re-raise."""
    catalog = catalog_from_env()
    server, port = await start(settings, catalog)
    log.info(
        "router listening on %s:%d (catalog %s, %d models)",
        settings.host,
        port,
        catalog.version,
        len(catalog.models),
    )
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        # Shielded so that a second cancellation cannot cut the graceful stop short.
        await asyncio.shield(server.stop(STOP_GRACE_S))
        raise
