"""Internal traffic over TLS (services/common/tls.py): a service with a certificate
serves gRPC over TLS only, a client that trusts the internal CA gets through, and NATS
connections verify the server too. Real servers, certificates made here."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import events
from services.common.config import ConfigError, Settings
from services.common.grpcio import channel
from services.common.tls import InternalTls
from services.router.catalog import load_catalog
from services.router.main import start
from tests.support.pki import make_pki
from tests.support.procs import free_port, nats_server_binary, wait_port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"), ["localhost"], ["127.0.0.1"])


def _settings(pki: dict[str, Path], **more: str) -> Settings:
    return Settings.from_env(
        {
            "STEPBLEND_TLS_CA_FILE": str(pki["ca"]),
            "STEPBLEND_TLS_CERT_FILE": str(pki["cert"]),
            "STEPBLEND_TLS_KEY_FILE": str(pki["key"]),
            "STEPBLEND_INTERNAL_TOKEN": "t0ken",
            **more,
        }
    )


async def _health(ch: grpc.aio.Channel) -> int:
    response = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    status: int = response.status
    return status


async def test_a_service_with_a_certificate_speaks_tls_only(pki: dict[str, Path]) -> None:
    health_port = free_port()
    settings = _settings(pki, STEPBLEND_HOST="127.0.0.1", STEPBLEND_HEALTH_PORT=str(health_port))
    server, port = await start(settings, load_catalog())
    try:
        tls = InternalTls.from_settings(settings)
        async with channel(f"127.0.0.1:{port}", tls=tls) as secure:
            assert await _health(secure) == health_pb2.HealthCheckResponse.SERVING
        # Plaintext is not answered at all.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _health(plain)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # Nor is a client that does not trust the internal CA.
        untrusting = grpc.ssl_channel_credentials()
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", untrusting) as stranger:
            with pytest.raises(grpc.aio.AioRpcError):
                await _health(stranger)
        # The probes' plaintext port answers health, and nothing else without a token.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as probe:
            assert await _health(probe) == health_pb2.HealthCheckResponse.SERVING
            route = probe.unary_unary("/stepblend.v1.Router/ListModels")
            with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
                await route(b"", timeout=5)
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(None)


@pytest.fixture
def tls_nats(pki: dict[str, Path], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            nats_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(tmp_path / "js"),
            "--tls",
            "--tlscert",
            str(pki["cert"]),
            "--tlskey",
            str(pki["key"]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_nats_connections_verify_the_server(pki: dict[str, Path], tls_nats: str) -> None:
    tls = InternalTls.from_settings(_settings(pki))
    nc = await events.connect(tls_nats, "test", tls)
    try:
        js = nc.jetstream()
        await events.ensure_streams(js)
        ack = await js.publish(events.USAGE_COMPLETED, b"{}")
        assert ack.stream == events.USAGE_STREAM
    finally:
        await nc.close()


def test_a_certificate_without_its_key_is_a_configuration_error(pki: dict[str, Path]) -> None:
    settings = Settings.from_env({"STEPBLEND_TLS_CERT_FILE": str(pki["cert"])})
    with pytest.raises(ConfigError, match="STEPBLEND_TLS_KEY_FILE"):
        InternalTls.from_settings(settings)
    assert InternalTls.from_settings(Settings.from_env({})) is None
