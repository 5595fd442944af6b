"""TLS for StepBlend's internal traffic: gRPC between the services and their NATS
connections. Off unless configured; on Kubernetes the overlays turn it on.

- `STEPBLEND_TLS_CA_FILE`: the CA that signed the internal certificates. With it, every
  internal gRPC channel and NATS connection is TLS, verifying the peer against it.
- `STEPBLEND_TLS_CERT_FILE`, `STEPBLEND_TLS_KEY_FILE`: this service's certificate and
  key (PEM). With them, its gRPC server accepts TLS only.

The files are read once, when a service starts; a CA without a certificate is a
client-only setup (the gateway's channels, the CLI), a certificate without its key
stops the service with a message naming the variables.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import ConfigError, Settings

__all__ = ["InternalTls"]


@dataclass(frozen=True)
class InternalTls:
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    ca_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> InternalTls | None:
        """The configured TLS, or None when internal traffic is plaintext."""
        if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
            raise ConfigError("STEPBLEND_TLS_CERT_FILE and STEPBLEND_TLS_KEY_FILE go together: set both or neither")
        if not (settings.tls_ca_file or settings.tls_cert_file):
            return None
        return cls(
            ca=_read(settings.tls_ca_file, "STEPBLEND_TLS_CA_FILE"),
            cert=_read(settings.tls_cert_file, "STEPBLEND_TLS_CERT_FILE"),
            key=_read(settings.tls_key_file, "STEPBLEND_TLS_KEY_FILE"),
            ca_file=settings.tls_ca_file,
        )

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """For a gRPC server: TLS with this service's certificate, or None (plaintext)."""
        if self.cert is None or self.key is None:
            return None
        return grpc.ssl_server_credentials([(self.key, self.cert)])

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """For a gRPC channel: TLS verifying the server against the CA, or None."""
        if self.ca is None:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.ca)

    def client_context(self) -> ssl.SSLContext | None:
        """For a NATS connection: TLS verifying the server against the CA, or None."""
        if not self.ca_file:
            return None
        return ssl.create_default_context(cafile=self.ca_file)


def _read(path: str, variable: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}={path!r}: cannot read it: {exc}") from None
