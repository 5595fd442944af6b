"""The provider table: `vendors.toml`, validated when loaded.

A vendor is a name, a wire format (which adapter speaks to it), a base URL (the
default from the table, or `STEPBLEND_<NAME>_BASE_URL`) and the adapter's quirks.
A vendor without a base URL (`local` until STEPBLEND_LOCAL_BASE_URL is set) is
known — its key can be stored — but not `configured`: it is never called. An
`operator_only` vendor (an endpoint the operator runs) is connected for an account by
the operator's tools only, never by the account itself. The operator's own vendors
(`STEPBLEND_VENDORS_FILE`, see `vendors_file`) are added after the packaged ones.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from services.common.vendors_file import NAME, PACKAGED_VENDORS, read_vendors_file
from services.providers.adapters import Adapter, make_adapter
from services.providers.credentials import KeyFields

VENDORS_FILE = PACKAGED_VENDORS


@dataclass(frozen=True)
class Vendor:
    name: str
    wire_format: str
    base_url: str
    adapter: Adapter
    operator_only: bool = False
    # A key of several fields (Azure's api_key, endpoint, deployments), see `credentials`.
    fields: KeyFields | None = None

    @property
    def configured(self) -> bool:
        """Whether it has an endpoint to call (its own, or each account's)."""
        return bool(self.base_url) or (self.fields is not None and self.fields.has_endpoint)

    def url(self, path: str) -> str:
        return self.base_url + path


def load_vendors(
    base_url_overrides: Mapping[str, str] | None = None, path: Path = VENDORS_FILE, operator_file: Path | None = None
) -> Mapping[str, Vendor]:
    """Every vendor by name, `operator_file`'s after the table's; ValueError naming the
    row when either is wrong (`VendorsFileError` for the operator's file)."""
    overrides = base_url_overrides or {}
    with path.open("rb") as f:
        table = tomllib.load(f)
    rows = table.get("providers")
    if not isinstance(rows, dict) or not rows:
        raise ValueError(f"{path}: no [providers.<name>] tables")
    vendors: dict[str, Vendor] = {}
    for name, row in rows.items():
        try:
            vendors[name] = _vendor(name, row, overrides.get(name))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: provider {name!r}: {exc}") from exc
    if operator_file is not None:
        for name, row in read_vendors_file(operator_file, frozenset(vendors)).items():
            try:
                vendors[name] = _vendor(name, row, overrides.get(name))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"STEPBLEND_VENDORS_FILE {operator_file}: provider {name!r}: {exc}") from exc
    return MappingProxyType(vendors)


def _vendor(name: str, row: Any, override: str | None) -> Vendor:
    if not NAME.match(name):
        raise ValueError("names are lowercase letters, digits and underscores")
    if not isinstance(row, dict):
        raise TypeError("must be a table")
    unknown = set(row) - {"wire_format", "base_url", "quirks", "operator_only", "fields"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    base_url = (override or row.get("base_url") or "").rstrip("/")
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    quirks = row.get("quirks", {})
    if not isinstance(quirks, dict):
        raise TypeError("quirks must be a table")
    wire_format = row.get("wire_format")
    if not isinstance(wire_format, str):
        raise TypeError("wire_format is required (a string)")
    operator_only = row.get("operator_only", False)
    if not isinstance(operator_only, bool):
        raise TypeError("operator_only must be true or false")
    fields = KeyFields.parse(row["fields"]) if "fields" in row else None
    if "{region}" in base_url and (fields is None or not fields.has_region):
        raise ValueError("a base_url with {region} needs a key field of kind region")
    return Vendor(name, wire_format, base_url, make_adapter(wire_format, quirks), operator_only, fields)
