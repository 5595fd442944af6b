"""Settings every service reads from the environment, once, in main().

Nothing here is read at import time; each service builds one `Settings` and
passes it down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    nats_url: str
    internal_token: str
    jwt_secret: str
    jwt_issuer: str
    jwt_lifetime_s: int
    jwt_audience: str
    jwt_private_key_file: str
    jwt_public_key_file: str
    jwt_previous_secret: str
    jwt_previous_public_key_file: str
    signup_enabled: bool
    billing_fail_open: bool
    sse_keepalive_s: float
    chat_port: int | None
    router_addr: str
    providers_addr: str
    billing_addr: str
    database_url: str
    key_encryption_key: str
    plans_file: str
    host: str
    port: int
    provider_base_urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("STEPBLEND_DATA_DIR", ".stepblend"))
        base_urls = {
            name[len("STEPBLEND_") : -len("_BASE_URL")].lower(): value.rstrip("/")
            for name, value in os.environ.items()
            if name.startswith("STEPBLEND_") and name.endswith("_BASE_URL") and value
        }
        return cls(
            data_dir=data_dir,
            nats_url=_env("STEPBLEND_NATS_URL", "nats://127.0.0.1:4222"),
            internal_token=_env("STEPBLEND_INTERNAL_TOKEN"),
            jwt_secret=_env("STEPBLEND_JWT_SECRET"),
            jwt_issuer=_env("STEPBLEND_JWT_ISSUER", "stepblend"),
            jwt_lifetime_s=int(_env("STEPBLEND_JWT_LIFETIME_SECONDS", str(30 * 24 * 3600))),
            jwt_audience=_env("STEPBLEND_JWT_AUDIENCE"),
            jwt_private_key_file=_env("STEPBLEND_JWT_PRIVATE_KEY"),
            jwt_public_key_file=_env("STEPBLEND_JWT_PUBLIC_KEY"),
            jwt_previous_secret=_env("STEPBLEND_JWT_PREVIOUS_SECRET"),
            jwt_previous_public_key_file=_env("STEPBLEND_JWT_PREVIOUS_PUBLIC_KEY"),
            signup_enabled=_env("STEPBLEND_SIGNUP_ENABLED", "true").lower() not in ("0", "false", "no", "off"),
            chat_port=int(_env("STEPBLEND_CHAT_PORT")) if _env("STEPBLEND_CHAT_PORT") else None,
            sse_keepalive_s=float(_env("STEPBLEND_SSE_KEEPALIVE_SECONDS", "10") or 10),
            billing_fail_open=_env("STEPBLEND_BILLING_FAIL_OPEN", "false").lower() in ("1", "true", "yes", "on"),
            router_addr=_env("STEPBLEND_ROUTER_ADDR", "127.0.0.1:50051"),
            providers_addr=_env("STEPBLEND_PROVIDERS_ADDR", "127.0.0.1:50052"),
            billing_addr=_env("STEPBLEND_BILLING_ADDR", "127.0.0.1:50053"),
            database_url=_env("STEPBLEND_DATABASE_URL"),
            key_encryption_key=_env("STEPBLEND_KEY_ENCRYPTION_KEY"),
            plans_file=_env("STEPBLEND_PLANS_FILE"),
            host=_env("STEPBLEND_HOST", "127.0.0.1"),
            port=int(_env("STEPBLEND_PORT", "0") or 0),
            provider_base_urls=base_urls,
        )
