"""Wiring of the providers service: everything is built here and passed down.

Environment: `services.common.config.Settings`, and what only this service reads,
`services.providers.settings.ProvidersSettings` (the provider timeouts, the previous
key-encryption keys, the operator's vendors file), each read once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.aio.msg import Msg

from services.common import events, grpcio, logs, mux_server, telemetry
from services.common.config import Settings
from services.common.tls import InternalTls
from services.providers.executor import Executor
from services.providers.genai import GenAiTelemetry
from services.providers.servicer import KeysServicer, ProvidersServicer
from services.providers.settings import ProvidersSettings
from services.providers.timeouts import Timeouts
from services.providers.upstream import make_client
from services.providers.vault import (
    KeyCache,
    KeyVault,
    default_database_url,
    make_engine,
    parse_kek,
)
from services.providers.vendors import load_vendors
from stepblend.v1 import providers_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = ("stepblend.v1.Providers", "stepblend.v1.Keys")


async def serve(
    settings: Settings,
    own: ProvidersSettings | None = None,
    *,
    timeouts: Timeouts | None = None,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Run the service until cancelled; `on_ready(port)` once it listens. `own`
    defaults to the environment's, read here once; `timeouts` (tests) overrides its."""
    own = own or ProvidersSettings.from_env()
    if not settings.key_encryption_key:
        raise RuntimeError(
            "STEPBLEND_KEY_ENCRYPTION_KEY is required: 32 random bytes, URL-safe base64 "
            '(python -c "import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())")'
        )
    kek = parse_kek(settings.key_encryption_key)
    previous_keks = own.previous_keks()
    timeouts = timeouts or own.timeouts()
    vendors = own.configure(load_vendors(settings.provider_base_urls, operator_file=own.operator_vendors()))
    # botocore's SigV4 signer (Bedrock) logs each canonical request at DEBUG, a session
    # token's header among its lines: never, whatever the service's level.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    engine = make_engine(settings.database_url or default_database_url(settings.data_dir))
    vault = KeyVault(engine, kek, previous=previous_keks)
    client = None
    nc = None
    server = None
    draining = asyncio.Event()
    try:
        await asyncio.to_thread(vault.create_tables)
        tls = InternalTls.from_settings(settings)
        nc = await events.connect(settings.nats_url, "providers", tls)
        js = nc.jetstream()
        await events.ensure_streams(js, settings.nats_stream_replicas)
        client = make_client(timeouts, telemetry.http_client_trace_configs())
        server = grpcio.make_server(settings.internal_token, caller_tokens=settings.caller_tokens)
        keys = KeyCache(vault)

        async def on_keys_changed(msg: Msg) -> None:
            # Another replica (or this one) changed a key: its cached ciphertext is stale.
            try:
                changed = events.KeysChanged.model_validate_json(msg.data)
            except ValueError:
                log.warning("ignored a malformed keys.v1.changed event")
                return
            keys.drop(changed.account_id, changed.provider)

        await nc.subscribe(events.KEYS_CHANGED, cb=on_keys_changed)
        providers_pb2_grpc.add_ProvidersServicer_to_server(
            ProvidersServicer(
                Executor(
                    client, keys, vendors, timeouts, genai=GenAiTelemetry.create(), max_attempts=settings.max_attempts
                ),
                # The most its attempts may take; the gateway's own deadline is sooner.
                deadline_s=timeouts.total * settings.max_attempts,
                draining=draining,
            ),
            server,
        )
        usable = frozenset(name for name, vendor in vendors.items() if vendor.configured)
        providers_pb2_grpc.add_KeysServicer_to_server(
            KeysServicer(
                vault,
                frozenset(vendors),
                js,
                usable,
                on_change=keys.drop,
                operator_only=frozenset(name for name, vendor in vendors.items() if vendor.operator_only),
                fields={name: vendor.fields for name, vendor in vendors.items() if vendor.fields is not None},
            ),
            server,
        )
        port, _ = await grpcio.start_server(
            server, f"{settings.host}:{settings.port}", SERVICE_NAMES, tls, settings.health_address
        )
        log.info("providers listening on %s:%d (%s)", settings.host, port, ", ".join(sorted(usable)))
        if on_ready is not None:
            on_ready(port)
        await asyncio.Event().wait()
    finally:
        if server is not None:
            # As long as the gateway's own grace: in-flight streams finish.
            await mux_server.stop_server(server, 30, draining)
        if client is not None:
            await client.close()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()
        engine.dispose()


def main() -> None:
    """`stepblend serve providers` without the CLI: settings from the environment."""
    settings = Settings.from_env()
    own = ProvidersSettings.from_env()
    logs.setup("providers", settings.log_level)
    tracing = telemetry.setup("providers")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, own))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    main()
