"""Settings every service reads from the environment, once, in main().

`Settings` is read from `STEPBLEND_*` variables and validated by pydantic,
strictly: a value that does not parse (`STEPBLEND_SIGNUP_ENABLED=maybe`, a port
that is not a number) stops the service at start with the variable's name, instead
of being taken for a default or for true. An empty variable counts as unset.
Nothing here is read at import time, and nothing writes the environment; each
service builds one `Settings` (and its own `ServiceSettings` subclass for what only
it reads) with `from_env()` and passes it down.

The variables are looked up by the fields' names (or their `validation_alias`)
here, rather than by pydantic-settings: the same few lines serve the process
environment and a test's mapping, and pydantic-settings (with python-dotenv, and
its command-line, cloud and file sources, which StepBlend never uses) cost each of
the four services 1-2 MB of memory.

Tests build variants with `settings.model_copy(update={...})`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["ConfigError", "ServiceSettings", "Settings", "provider_base_urls"]


class ConfigError(ValueError):
    """A variable's value does not parse; the message names the variable."""


class ServiceSettings(BaseModel):
    """The base of every service's settings: `STEPBLEND_`-prefixed variables,
    validated once, immutable afterwards. Built directly (`XSettings()`), it holds
    the defaults; `from_env()` reads the variables."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="ignore", frozen=True, populate_by_name=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings from `environ` (default: the process environment); ConfigError
        names every variable whose value does not parse."""
        try:
            return cls._read(environ)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                field = cls.model_fields.get(name)
                # Read from the environment, a renamed field's error names its variable already.
                variable = (
                    name
                    if name.startswith("STEPBLEND_")
                    else _env_names(name, field.validation_alias if field else None)[0]
                )
                problems.append(f"{variable}={error.get('input')!r}: {error['msg']}")
            raise ConfigError("invalid configuration: " + "; ".join(problems)) from None

    @classmethod
    def _read(cls, environ: Mapping[str, str] | None) -> Self:
        # Each field from the first of its variables that is set and not blank.
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            for env_name in _env_names(name, field.validation_alias):
                raw = environ.get(env_name, "").strip()
                if raw:
                    values[name] = raw
                    break
        return cls.model_validate(values)


def _env_names(name: str, alias: object) -> list[str]:
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [f"STEPBLEND_{name.upper()}"]


def _alias(env_name: str) -> Any:
    """A text field (default empty) read from `env_name` rather than STEPBLEND_ + its own name."""
    return Field("", validation_alias=AliasChoices(env_name))


def provider_base_urls(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`STEPBLEND_<PROVIDER>_BASE_URL` overrides, by lower-case provider name."""
    env = os.environ if environ is None else environ
    return {
        name[len("STEPBLEND_") : -len("_BASE_URL")].lower(): value.strip().rstrip("/")
        for name, value in env.items()
        if name.startswith("STEPBLEND_") and name.endswith("_BASE_URL") and value.strip()
    }


class Settings(ServiceSettings):
    data_dir: Path = Path(".stepblend")
    nats_url: str = "nats://127.0.0.1:4222"
    # The operator's token for internal gRPC (every method), and what a service sends
    # on its own calls unless it has a caller token; see services/common/grpcio.py.
    internal_token: str = ""
    # Other callers' own tokens, JSON {"gateway": "..."}: each may call only its
    # grpcio.CALLER_METHODS.
    caller_tokens: dict[str, str] = Field(default_factory=dict)
    jwt_secret: str = ""
    jwt_issuer: str = "stepblend"
    jwt_lifetime_s: int = Field(30 * 24 * 3600, gt=0, validation_alias=AliasChoices("STEPBLEND_JWT_LIFETIME_SECONDS"))
    jwt_audience: str = ""
    jwt_private_key_file: str = _alias("STEPBLEND_JWT_PRIVATE_KEY")
    jwt_public_key_file: str = _alias("STEPBLEND_JWT_PUBLIC_KEY")
    jwt_previous_secret: str = ""
    jwt_previous_public_key_file: str = _alias("STEPBLEND_JWT_PREVIOUS_PUBLIC_KEY")
    # The gateway's secret for API keys' keyed hashes (SPEC.md §7); empty: no API keys.
    api_key_pepper: str = ""
    signup_enabled: bool = True
    billing_fail_open: bool = False
    sse_keepalive_s: float = Field(10.0, ge=0, validation_alias=AliasChoices("STEPBLEND_SSE_KEEPALIVE_SECONDS"))
    chat_port: int | None = Field(None, ge=0, le=65535)
    router_addr: str = "127.0.0.1:50051"
    providers_addr: str = "127.0.0.1:50052"
    billing_addr: str = "127.0.0.1:50053"
    database_url: str = ""
    key_encryption_key: str = ""
    plans_file: str = ""
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    log_level: str = "INFO"
    # TLS for internal gRPC and NATS (services/common/tls.py); empty: plaintext.
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # With TLS on, a plaintext port that answers only health checks, for probes that
    # cannot speak TLS (Kubernetes' native gRPC probes).
    health_port: int | None = Field(None, ge=1, le=65535)
    # JetStream servers holding each stream (3 on a three-node cluster).
    nats_stream_replicas: int = Field(1, ge=1, le=5)
    # Candidates one request may call upstream (providers), fallbacks included.
    max_attempts: int = Field(4, ge=1, le=64)
    provider_base_urls: dict[str, str] = Field(default_factory=dict, validation_alias=AliasChoices("__never_set__"))

    @property
    def health_address(self) -> str | None:
        """`host:STEPBLEND_HEALTH_PORT`, the probes' plaintext port, when there is one."""
        return f"{self.host}:{self.health_port}" if self.health_port else None

    @field_validator("caller_tokens", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        # A variable's value is text; tests may pass the mapping itself.
        return json.loads(value) if isinstance(value, str) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        settings = super().from_env(environ)
        return settings.model_copy(update={"provider_base_urls": provider_base_urls(environ)})
