"""The catalog's building blocks shared by its tables: the error, the tokenizer
families, and the checks every field goes through (catalog.py, embedding_catalog.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["CatalogError", "Tokenizer", "count", "number", "positive_int", "price", "text", "text_list"]


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the row and the field."""


@dataclass(frozen=True)
class Tokenizer:
    """How far the gateway's o200k_base count may fall short for one tokenizer family."""

    name: str
    #: Multiplier (>= 1) on the o200k_base count.
    margin: Decimal
    #: Tokens the provider adds to every request (e.g. a chat-format preamble).
    overhead_tokens: int
    #: Tokens the provider adds when the request carries tools (a tool-use prompt).
    tools_overhead_tokens: int
    basis: str

    def estimate(self, o200k_tokens: int, needs_tools: bool) -> int:
        """Prompt tokens this family is billed for, erring high: ceil(count x margin) +
        overheads. Integer arithmetic on the margin's exact ratio keeps it exact and cheap."""
        numerator, denominator = self.margin.as_integer_ratio()
        scaled = -(-o200k_tokens * numerator // denominator)  # ceiling division
        extra = self.overhead_tokens + (self.tools_overhead_tokens if needs_tools else 0)
        return scaled + extra


def text(row: Mapping[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise CatalogError(f"{where}: {key} must be a non-empty string without spaces around it")
    return value


def text_list(row: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CatalogError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(value)


def price(row: Mapping[str, Any], key: str, where: str) -> Decimal:
    value = row.get(key)
    # A TOML float (2.5) has already lost exactness on its way through binary; money
    # is written as a string so that Decimal sees exactly what the operator typed.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CatalogError(f'{where}: {key} must be a decimal string such as "2.50", got {value!r}')
    try:
        price = Decimal(value)
    except InvalidOperation as exc:
        raise CatalogError(f"{where}: {key} {value!r} is not a decimal number") from exc
    if not price.is_finite() or price < 0:
        raise CatalogError(f"{where}: {key} must be a finite non-negative price, got {value!r}")
    return price


def positive_int(row: Mapping[str, Any], key: str, where: str) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CatalogError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def count(row: Mapping[str, Any], key: str, where: str) -> int:
    value = row.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise CatalogError(f"{where}: {key} must be a non-negative integer, got {value!r}")
    return value


def number(row: Mapping[str, Any], key: str, where: str) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CatalogError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)
