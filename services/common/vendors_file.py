"""The operator's own vendors: `STEPBLEND_VENDORS_FILE`, read by two services.

A self-hosted OpenAI-compatible server (Ollama, vLLM, LM Studio, TGI) is added as a
`[providers.<name>]` table, the schema of `vendors.toml`, with its `base_url` in the
file. Such a vendor is always `operator_only`: no account connects itself to it, the
operator allows it per account (`stepblend vendor allow EMAIL NAME`). Only
`wire_format = "openai_compatible"` is taken, and a name the package already uses is
refused, so a file can add a vendor but never redefine OpenAI's endpoint.

The providers service reads the rows to call the vendor (`vendors.load_vendors`); the
router reads only the names, to accept catalog rows that name them. This module
parses TOML and nothing else, so the router imports no adapter.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["NAME", "PACKAGED_VENDORS", "VendorsFileError", "operator_vendor_names", "read_vendors_file"]

PACKAGED_VENDORS = Path(__file__).parents[1] / "providers" / "vendors.toml"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_KEYS = frozenset({"wire_format", "base_url", "quirks", "operator_only"})


class VendorsFileError(ValueError):
    """The operator's vendors file cannot be used: the service must not start."""


def read_vendors_file(path: Path, packaged: Collection[str]) -> Mapping[str, Mapping[str, Any]]:
    """The file's vendor rows by name, each with `operator_only = true` set.

    `packaged` are the names already taken (vendors.toml's, or the catalog's known
    providers). Raises `VendorsFileError` naming the file and the row.
    """
    try:
        with path.open("rb") as f:
            table = tomllib.load(f)
    except OSError as exc:
        raise VendorsFileError(f"STEPBLEND_VENDORS_FILE {path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise VendorsFileError(f"STEPBLEND_VENDORS_FILE {path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(table) - {"providers"})
    rows = table.get("providers")
    if unknown or not isinstance(rows, dict) or not rows:
        raise VendorsFileError(f"STEPBLEND_VENDORS_FILE {path}: expected [providers.<name>] tables only")
    out: dict[str, Mapping[str, Any]] = {}
    for name, row in rows.items():
        try:
            out[name] = _row(name, row, packaged)
        except ValueError as exc:
            raise VendorsFileError(f"STEPBLEND_VENDORS_FILE {path}: provider {name!r}: {exc}") from exc
    return MappingProxyType(out)


def operator_vendor_names(path: Path, taken: Collection[str] = ()) -> frozenset[str]:
    """The names of the file's vendors, checked as the providers service checks them
    (no name of vendors.toml's, nor of `taken`)."""
    with PACKAGED_VENDORS.open("rb") as f:
        packaged = set(tomllib.load(f)["providers"])
    return frozenset(read_vendors_file(path, packaged | set(taken)))


def _row(name: str, row: object, packaged: Collection[str]) -> Mapping[str, Any]:
    if not NAME.match(name):
        raise ValueError("names are lowercase letters, digits and underscores")
    if name in packaged:
        raise ValueError("the name is a packaged provider's; an operator's vendor needs a name of its own")
    if not isinstance(row, dict):
        raise ValueError("must be a table")
    unknown = sorted(set(row) - _KEYS)
    if unknown:
        raise ValueError(f"unknown keys {unknown}")
    if row.get("wire_format") != "openai_compatible":
        raise ValueError(f'wire_format must be "openai_compatible", got {row.get("wire_format")!r}')
    base_url = row.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url is required: the http(s) URL `/chat/completions` follows, got {base_url!r}")
    if row.get("operator_only", True) is not True:
        raise ValueError("an operator's vendor is operator_only: leave operator_only out or set it true")
    return {**row, "operator_only": True}
