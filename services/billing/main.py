"""The billing process: database, usage consumer, reaper and gRPC server, built from Settings.

Start-up applies the schema migrations (replicas starting together take turns,
see migrate.py). `serve` runs until cancelled, then shuts down in the order
that loses nothing: the consumer settles the batch in hand and stops pulling,
the reaper stops, the gRPC server lets calls in flight finish, NATS drains, the
database pool closes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from grpc_health.v1.health import aio as health_aio
from nats.aio.client import Client as NATS
from sqlalchemy import Engine

from services.billing.consumer import UsageConsumer
from services.billing.db import database_url, make_engine
from services.billing.keys_servicer import SERVICE_NAME as KEYS_SERVICE_NAME
from services.billing.keys_servicer import ApiKeysServicer
from services.billing.migrate import to_head
from services.billing.months import Clock
from services.billing.notify import JetStreamAccountEvents
from services.billing.options import BillingOptions
from services.billing.plans import load_plans
from services.billing.reaper import Reaper
from services.billing.servicer import SERVICE_NAME, BillingServicer
from services.billing.writer import Writer
from services.common import events
from services.common.config import Settings
from services.common.grpcio import make_server, start_server
from services.common.tls import InternalTls
from stepblend.v1 import billing_pb2_grpc

__all__ = ["open_database", "serve"]

log = logging.getLogger(__name__)

# Calls in flight get this long to finish at shutdown; Kubernetes' default grace
# period is 30 s, so this leaves time for the rest.
_GRPC_GRACE_S = 10.0
# Longer than a fetch plus a batch of commits takes; a consumer still busy after
# this is cancelled, and its unacked events are redelivered later.
_CONSUMER_STOP_S = 15.0


async def serve(settings: Settings, *, options: BillingOptions | None = None, clock: Clock = time.time) -> None:
    """Run billing until cancelled; re-raises the CancelledError after a clean shutdown.

    `options` default to the environment's (options.py); `clock` is the time
    admission and the reaper go by (tests move it across a month's end).
    Raises RuntimeError if the usage consumer ever stops by itself: a billing that
    answers calls but no longer settles usage should be restarted, not left running.
    """
    plans = load_plans(settings.plans_file)  # a bad plans file stops start-up, loudly
    options = options or BillingOptions.from_env()
    engine, writer = await asyncio.to_thread(open_database, database_url(settings), options.sqlite_synchronous)
    try:
        tls = InternalTls.from_settings(settings)
        nc = await events.connect(settings.nats_url, "billing", tls)
        try:
            js = nc.jetstream()
            await events.ensure_streams(js, settings.nats_stream_replicas)
            consumer = UsageConsumer(js, writer)
            consumer_task = asyncio.create_task(consumer.run(), name="billing-usage-consumer")
            reaper = Reaper(engine, clock, options.reap_interval_s)
            reaper_task = asyncio.create_task(reaper.run(), name="billing-reaper")
            server = make_server(settings.internal_token, caller_tokens=settings.caller_tokens)
            servicer = BillingServicer(engine, writer, plans, JetStreamAccountEvents(js), options=options, clock=clock)
            billing_pb2_grpc.add_BillingServicer_to_server(servicer, server)
            billing_pb2_grpc.add_ApiKeysServicer_to_server(ApiKeysServicer(servicer), server)
            health: health_aio.HealthServicer | None = None
            try:
                port, health = await start_server(
                    server,
                    f"{settings.host}:{settings.port}",
                    [SERVICE_NAME, KEYS_SERVICE_NAME],
                    tls,
                    settings.health_address,
                )
                log.info("billing serving on %s:%d, plans: %s", settings.host, port, ", ".join(plans.plans))
                # shield: cancelling serve must not cancel the consumer mid-batch;
                # it is stopped gently below.
                await asyncio.shield(consumer_task)
                raise RuntimeError("the usage consumer stopped by itself")
            finally:
                if health is not None:
                    await health.enter_graceful_shutdown()
                await _stop_consumer(consumer, consumer_task)
                reaper.stop()
                await asyncio.gather(reaper_task, return_exceptions=True)
                await server.stop(_GRPC_GRACE_S)
        finally:
            await _close_nats(nc)
    finally:
        await asyncio.to_thread(writer.close)
        engine.dispose()


def open_database(url: str, synchronous: str = "NORMAL") -> tuple[Engine, Writer]:
    """Billing's database at `url`, migrated to the newest schema, and its writer.

    Replicas starting together on one database take turns (db.startup_lock,
    migrate.upgrade); none of them fails for another's lock. The migration runs
    in a child process (migrate.to_head).
    """
    engine = make_engine(url, synchronous)
    try:
        writer = Writer(engine)
    except BaseException:
        engine.dispose()
        raise
    try:
        to_head(engine, url)
    except BaseException:
        writer.close()
        engine.dispose()
        raise
    return engine, writer


async def _stop_consumer(consumer: UsageConsumer, task: asyncio.Task[None]) -> None:
    consumer.stop()
    done, _ = await asyncio.wait({task}, timeout=_CONSUMER_STOP_S)
    if not done:
        log.warning("usage consumer did not stop in %.0f s; cancelling it", _CONSUMER_STOP_S)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    elif not task.cancelled() and (error := task.exception()) is not None:
        log.error("the usage consumer failed", exc_info=error)


async def _close_nats(nc: NATS) -> None:
    try:
        await nc.drain()
    except Exception:
        log.warning("draining NATS failed; closing", exc_info=True)
        await nc.close()
