"""Secrets `stepblend up` generates into the data dir when the environment has
none, and keeps (mode 0600) so restarts keep tokens and stored keys valid."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path


def token(nbytes: int) -> str:
    """`nbytes` random bytes, URL-safe base64, unpadded: what `secrets.token_urlsafe`
    makes, without importing `secrets`, which loads OpenSSL's libcrypto (4 MB) into
    the long-lived `stepblend up` process for nothing."""
    return base64.urlsafe_b64encode(os.urandom(nbytes)).rstrip(b"=").decode()


GENERATORS: dict[str, tuple[str, Callable[[], str]]] = {
    "STEPBLEND_JWT_SECRET": ("jwt_secret", lambda: token(48)),
    "STEPBLEND_KEY_ENCRYPTION_KEY": ("key_encryption_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()),
    "STEPBLEND_INTERNAL_TOKEN": ("internal_token", lambda: token(32)),
    # The keyed hash of API keys (services/gateway/apikeys.py): losing it invalidates every key.
    "STEPBLEND_API_KEY_PEPPER": ("api_key_pepper", lambda: token(32)),
    # `stepblend up` only: the gateway's own internal gRPC token (grpcio.CALLER_METHODS).
    "STEPBLEND_GATEWAY_TOKEN": ("gateway_token", lambda: token(32)),
}


def read_or_create(data_dir: Path, env_name: str, create: bool = True) -> str:
    """The env value when set; else the data dir's file; else (create) a new one."""
    value = os.environ.get(env_name, "").strip()
    if value:
        return value
    filename, generate = GENERATORS[env_name]
    path = data_dir / filename
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise SystemExit(f"{env_name} is not set and {path} does not exist: is `stepblend up` running there?")
    value = generate()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
