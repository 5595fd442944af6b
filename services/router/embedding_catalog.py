"""The catalog's `[[embeddings]]` table: embedding models, per provider (SPEC.md §9).

A row is one embedding model served by one provider: its price per million input
tokens, the vector length it returns (`dimensions`), the most tokens one input may
have (`max_input_tokens`), the most inputs one request may carry (`max_inputs`), and
whether it takes OpenAI's `dimensions` parameter to shorten its vectors. Embedding
models answer no chat request and chat models no embeddings request: the tables are
apart, so a strategy or a fallback can never cross from one to the other. Names
follow the chat table's rules, and an embedding model may not share a name with a
chat model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.router.catalog_fields import CatalogError, Tokenizer, positive_int, price, text, text_list

__all__ = ["EmbeddingEntry", "parse_embeddings"]

_REQUIRED = frozenset(
    {"id", "provider", "upstream_model", "tokenizer", "input_per_mtok", "dimensions", "max_input_tokens", "source"}
)
_OPTIONAL = frozenset({"aliases", "max_inputs", "dimensions_param"})
#: OpenAI's limit on inputs per request; a row may set a lower one.
DEFAULT_MAX_INPUTS = 2048


@dataclass(frozen=True)
class EmbeddingEntry:
    """One embedding model served by one provider."""

    id: str
    provider: str
    upstream_model: str
    aliases: tuple[str, ...]
    tokenizer: Tokenizer
    input_per_mtok: Decimal
    dimensions: int
    max_input_tokens: int
    max_inputs: int
    #: Takes `dimensions` (shorter vectors); otherwise a request setting it is refused.
    dimensions_param: bool
    source: str
    key: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.provider}:{self.id}")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


def parse_embeddings(
    rows: object, where: str, tokenizers: Mapping[str, Tokenizer], providers: frozenset[str]
) -> tuple[EmbeddingEntry, ...]:
    """The `[[embeddings]]` rows (none when the table is absent); raises `CatalogError`."""
    if rows is None:
        return ()
    if not isinstance(rows, list):
        raise CatalogError(f"{where}: embeddings must be an array of tables")
    entries = tuple(_row(row, f"{where}: embeddings[{i}]", tokenizers, providers) for i, row in enumerate(rows))
    keys = [entry.key for entry in entries]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise CatalogError(f"{where}: duplicate embedding models {duplicates}")
    return entries


def _row(row: object, where: str, tokenizers: Mapping[str, Tokenizer], providers: frozenset[str]) -> EmbeddingEntry:
    if not isinstance(row, dict):
        raise CatalogError(f"{where}: must be a table")
    missing = sorted(_REQUIRED - set(row))
    unknown = sorted(set(row) - _REQUIRED - _OPTIONAL)
    if missing or unknown:
        raise CatalogError(f"{where}: missing fields {missing}, unknown fields {unknown}")
    provider = text(row, "provider", where)
    if provider not in providers:
        raise CatalogError(f"{where}: unknown provider {provider!r}")
    tokenizer = text(row, "tokenizer", where)
    if tokenizer not in tokenizers:
        raise CatalogError(f"{where}: unknown tokenizer {tokenizer!r}")
    dimensions_param = row.get("dimensions_param", False)
    if not isinstance(dimensions_param, bool):
        raise CatalogError(f"{where}: dimensions_param must be true or false")
    source = text(row, "source", where)
    if not source.startswith("https://"):
        raise CatalogError(f"{where}: source must be the https URL the prices come from")
    return EmbeddingEntry(
        id=text(row, "id", where),
        provider=provider,
        upstream_model=text(row, "upstream_model", where),
        aliases=text_list(row, "aliases", where),
        tokenizer=tokenizers[tokenizer],
        input_per_mtok=price(row, "input_per_mtok", where),
        dimensions=positive_int(row, "dimensions", where),
        max_input_tokens=positive_int(row, "max_input_tokens", where),
        max_inputs=_max_inputs(row, where),
        dimensions_param=dimensions_param,
        source=source,
    )


def _max_inputs(row: Mapping[str, Any], where: str) -> int:
    return positive_int(row, "max_inputs", where) if "max_inputs" in row else DEFAULT_MAX_INPUTS
