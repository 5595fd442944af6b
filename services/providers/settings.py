"""What only the providers service reads from the environment, read once at start.

- `STEPBLEND_PROVIDER_CONNECT_TIMEOUT` (5 s), `STEPBLEND_PROVIDER_TTFT_TIMEOUT`
  (60 s: a stream's wait for its first token), `STEPBLEND_PROVIDER_READ_TIMEOUT`
  (60 s: the longest silence mid-stream), `STEPBLEND_PROVIDER_TOTAL_TIMEOUT` (600 s:
  one attempt, start to end) — see `timeouts`; each a positive number of seconds;
- `STEPBLEND_AZURE_API_VERSION`: the Azure OpenAI `api-version` (default: the
  vendors.toml row's, a GA version);
- `STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS`: earlier key-encryption keys
  (comma-separated) that still open rows not yet rotated — see `vault`, `rotate`;
- `STEPBLEND_VENDORS_FILE`: the operator's own OpenAI-compatible vendors (a TOML
  file of `[providers.<name>]` tables) — see `vendors_file`.

Parsed strictly, like every service's settings (`services.common.config`): a value
that does not parse stops the service at start, naming its variable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from pydantic import Field, SecretStr

from services.common.config import ServiceSettings
from services.providers.adapters.azure import Azure
from services.providers.timeouts import Timeouts
from services.providers.vault import parse_keks
from services.providers.vendors import Vendor

__all__ = ["ProvidersSettings"]


class ProvidersSettings(ServiceSettings):
    # Named for their variables (STEPBLEND_ + the name): no aliases to keep in step.
    provider_connect_timeout: float = Field(Timeouts.connect, gt=0)
    provider_ttft_timeout: float = Field(Timeouts.first_token, gt=0)
    provider_read_timeout: float = Field(Timeouts.read, gt=0)
    provider_total_timeout: float = Field(Timeouts.total, gt=0)
    key_encryption_key_previous: SecretStr = SecretStr("")
    vendors_file: str = ""
    azure_api_version: str = Field("", pattern=r"^(\d{4}-\d{2}-\d{2}(-preview)?|latest|preview|v1)?$")

    def timeouts(self) -> Timeouts:
        return Timeouts(
            connect=self.provider_connect_timeout,
            read=self.provider_read_timeout,
            total=self.provider_total_timeout,
            first_token=self.provider_ttft_timeout,
        )

    def previous_keks(self) -> list[bytes]:
        """The earlier key-encryption keys; ValueError for one that is not 32 bytes."""
        return parse_keks(self.key_encryption_key_previous.get_secret_value())

    def operator_vendors(self) -> Path | None:
        """The operator's vendors file, when one is named."""
        return Path(self.vendors_file.strip()) if self.vendors_file.strip() else None

    def configure(self, vendors: Mapping[str, Vendor]) -> Mapping[str, Vendor]:
        """`vendors` with what these settings change in them: Azure's API version."""
        if not self.azure_api_version:
            return vendors
        return MappingProxyType(
            {
                name: dataclasses.replace(vendor, adapter=vendor.adapter.with_api_version(self.azure_api_version))
                if isinstance(vendor.adapter, Azure)
                else vendor
                for name, vendor in vendors.items()
            }
        )
