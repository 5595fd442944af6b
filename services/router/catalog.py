"""The model catalog: a TOML data file read once at start-up into frozen dataclasses.

A bad catalog must stop the router before it serves a single request, so every row is
checked (known provider, prices that are non-negative decimal strings, limits that are
positive integers, no unknown or missing field) and every problem raises
`CatalogError` naming the file, the row and the field.

Names: a row is one model *served by one provider*. The same catalog id may appear
under several providers (e.g. an open-weights model on two hosts); a name (an id or an
alias) always means one catalog id, so that an unprefixed name can fall back among
providers but never to another model. `provider:model` pins the provider.

The operator's file (`STEPBLEND_CATALOG_FILE`) extends the packaged catalog: its rows
are added, and one with a packaged row's `provider:id` replaces that row in place. A
file with `extends = false` at the top is the whole catalog instead. Its rows may name
the operator's own vendors (`STEPBLEND_VENDORS_FILE`) besides `KNOWN_PROVIDERS`.

Tokenizers: the gateway counts prompts with OpenAI's o200k_base only. Each row names a
`[tokenizers]` entry whose margin and fixed overheads turn that count into an
estimate that errs high for the row's provider (see `Tokenizer.estimate`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from services.router.catalog_fields import (
    CatalogError,
    Tokenizer,
    count,
    number,
    positive_int,
    price,
    text,
    text_list,
)
from services.router.embedding_catalog import EmbeddingEntry, parse_embeddings

#: Providers the executor has adapters for. A row naming anything else is a typo
#: that would only show up as failed requests, so it is refused at load.
KNOWN_PROVIDERS = frozenset(
    {
        *("openai", "anthropic", "gemini", "groq", "deepseek", "mistral", "together", "xai", "demo"),
        *("fireworks", "cerebras", "openrouter", "perplexity", "azure", "bedrock"),
        *("demo_anthropic", "demo_gemini"),
    }
)

_TOP_KEYS = frozenset({"version", "quality_source", "priors_source", "tokenizers", "models", "embeddings"})
_TOKENIZER_KEYS = frozenset({"margin", "overhead_tokens", "tools_overhead_tokens", "basis"})
_REQUIRED = frozenset(
    {
        "id",
        "provider",
        "upstream_model",
        "tokenizer",
        "input_per_mtok",
        "output_per_mtok",
        "context_window",
        "max_output_tokens",
        "capabilities",
        "quality",
        "ttft_ms_prior",
        "tokens_per_s_prior",
        "reliability_prior",
    }
)
_OPTIONAL = frozenset({"aliases", "cached_input_per_mtok", "param_renames", "unsupported_params"})
_CAPABILITIES = ("tools", "vision", "json_schema", "streaming")


@dataclass(frozen=True)
class Capabilities:
    """What a model can do that a request may need."""

    tools: bool
    vision: bool
    json_schema: bool
    streaming: bool


@dataclass(frozen=True)
class ModelEntry:
    """One model served by one provider, with its prices (USD per million tokens)."""

    id: str
    provider: str
    upstream_model: str
    aliases: tuple[str, ...]
    tokenizer: Tokenizer
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None
    context_window: int
    max_output_tokens: int
    capabilities: Capabilities
    # Pairs rather than a dict so that the entry stays immutable and hashable.
    param_renames: tuple[tuple[str, str], ...]
    unsupported_params: tuple[str, ...]
    quality: float
    ttft_ms_prior: float
    tokens_per_s_prior: float
    reliability_prior: float
    #: `provider:id`, unique in a catalog. Derived once: every decision reads it per row.
    key: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.provider}:{self.id}")

    @property
    def names(self) -> tuple[str, ...]:
        """Every name that resolves to this row without a provider prefix."""
        return (self.id, *self.aliases)


@dataclass(frozen=True)
class Catalog:
    """The validated model table; build it with `load_catalog` or `parse_catalog`."""

    version: str
    quality_source: str
    models: tuple[ModelEntry, ...]
    tokenizers: Mapping[str, Tokenizer] = field(default_factory=lambda: MappingProxyType({}))
    embeddings: tuple[EmbeddingEntry, ...] = ()
    #: The providers a `provider:` prefix may name: the packaged ones and the operator's.
    known_providers: frozenset[str] = KNOWN_PROVIDERS
    _by_name: Mapping[str, tuple[ModelEntry, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_name: dict[str, list[ModelEntry]] = {}
        for entry in self.models:
            for name in entry.names:
                by_name.setdefault(name, []).append(entry)
        # Frozen: the index is computed once here, never mutated afterwards.
        object.__setattr__(self, "_by_name", MappingProxyType({k: tuple(v) for k, v in by_name.items()}))

    @property
    def providers(self) -> frozenset[str]:
        """Providers that serve at least one catalog model."""
        return frozenset(entry.provider for entry in self.models)

    def resolve_embedding(self, name: str) -> tuple[EmbeddingEntry, ...]:
        """Embedding rows a client's `model` names, as `resolve` does for chat rows."""
        prefix, sep, rest = name.partition(":")
        wanted, provider = (rest, prefix) if sep and prefix in self.known_providers else (name, "")
        return tuple(e for e in self.embeddings if wanted in e.names and (not provider or e.provider == provider))

    def resolve(self, name: str) -> tuple[ModelEntry, ...]:
        """Rows a client's `model` names, in catalog order; empty when unknown.

        `provider:model` returns that provider's row only. The prefix is read as a
        provider only when it is a known one, so ids that contain a colon (e.g. a
        local `llama3:8b`) still resolve as plain ids, and `ollama:llama3:8b` pins an
        operator's `ollama` vendor.
        """
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self.known_providers:
            return tuple(e for e in self._by_name.get(rest, ()) if e.provider == prefix)
        return self._by_name.get(name, ())


def default_catalog_text() -> str:
    """The catalog shipped inside the package (services/router/catalog.toml)."""
    return resources.files("services.router").joinpath("catalog.toml").read_text("utf-8")


def load_catalog(
    path: Path | None = None, *, reserved_names: Iterable[str] = (), vendors: Iterable[str] = ()
) -> Catalog:
    """Read and validate a catalog file, extending the packaged one (unless the file
    says `extends = false`); `None` reads the packaged one alone.

    `reserved_names` are names no model may take (the strategy names), because a
    body's `model` is read as a strategy first. `vendors` are the operator's own,
    which rows may name besides `KNOWN_PROVIDERS`.
    """
    providers = KNOWN_PROVIDERS | frozenset(vendors)

    def packaged() -> Catalog:
        return parse_catalog(
            _read(None), source="packaged catalog.toml", reserved_names=reserved_names, providers=providers
        )

    if path is None:
        return packaged()
    data = _read(path)
    extends = data.pop("extends", True)
    if not isinstance(extends, bool):
        raise CatalogError(f"catalog {path}: `extends` must be true or false")
    base = packaged() if extends else None
    return parse_catalog(data, source=str(path), reserved_names=reserved_names, providers=providers, base=base)


def _read(path: Path | None) -> dict[str, Any]:
    source = str(path) if path else "packaged catalog.toml"
    try:
        raw = path.read_text("utf-8") if path else default_catalog_text()
    except OSError as exc:
        raise CatalogError(f"catalog {source}: cannot read: {exc}") from exc
    try:
        return tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog {source}: not valid TOML: {exc}") from exc


def parse_catalog(
    data: Mapping[str, Any],
    *,
    source: str = "catalog",
    reserved_names: Iterable[str] = (),
    providers: frozenset[str] = KNOWN_PROVIDERS,
    base: Catalog | None = None,
) -> Catalog:
    """Validate parsed TOML into a `Catalog`; raise `CatalogError` on the first problem.

    With `base`, the rows extend it (a row with a base row's `provider:id` replaces it
    in place); the base's tokenizers serve the rows, and `version`, `[tokenizers]`
    and `[[models]]` may be left out (the base's version stands then).
    """
    where = f"catalog {source}"
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise CatalogError(f"{where}: unknown top-level keys {unknown}")
    version = data.get("version", base.version if base else None)
    if not isinstance(version, str) or not version.strip():
        raise CatalogError(f"{where}: `version` must be a non-empty string")
    quality_source = data.get("quality_source", base.quality_source if base else "")
    if not isinstance(quality_source, str):
        raise CatalogError(f"{where}: `quality_source` must be a string")
    own = _parse_tokenizers(data.get("tokenizers"), where) if base is None or "tokenizers" in data else {}
    tokenizers = {**(base.tokenizers if base else {}), **own}
    rows = data.get("models", [] if base else None)
    if not isinstance(rows, list) or not (rows or base):
        raise CatalogError(f"{where}: needs at least one [[models]] row")

    reserved = frozenset(reserved_names)
    models = tuple(_parse_row(row, f"{where}: models[{i}]", tokenizers, providers) for i, row in enumerate(rows))
    _check_names(models, where, reserved, providers)
    embeddings = parse_embeddings(data.get("embeddings"), where, tokenizers, providers)
    if base is not None:
        models, embeddings = _extended(base.models, models), _extended(base.embeddings, embeddings)
        _check_names(models, f"{where} with the packaged catalog", reserved, providers)
    chat_names = {name for entry in models for name in entry.names}
    shared = sorted({name for entry in embeddings for name in entry.names} & chat_names)
    if shared:
        raise CatalogError(f"{where}: names used by both a chat and an embedding model: {shared}")
    return Catalog(
        version=version,
        quality_source=quality_source,
        models=models,
        tokenizers=MappingProxyType(tokenizers),
        embeddings=embeddings,
        known_providers=providers,
    )


_Row = TypeVar("_Row", ModelEntry, EmbeddingEntry)


def _extended(base: tuple[_Row, ...], added: tuple[_Row, ...]) -> tuple[_Row, ...]:
    """`base` with each row `added` has a `provider:id` of replaced in place, then the rest of `added`."""
    replacing = {row.key: row for row in added}
    kept = tuple(replacing.pop(row.key, row) for row in base)
    return kept + tuple(row for row in added if row.key in replacing)


def _parse_tokenizers(value: object, where: str) -> dict[str, Tokenizer]:
    if not isinstance(value, dict) or not value:
        raise CatalogError(f"{where}: needs a [tokenizers] table with at least one entry")
    out: dict[str, Tokenizer] = {}
    for name, row in value.items():
        here = f"{where}: tokenizers.{name}"
        if not isinstance(row, dict):
            raise CatalogError(f"{here}: must be a table")
        unknown = sorted(set(row) - _TOKENIZER_KEYS)
        if unknown:
            raise CatalogError(f"{here}: unknown fields {unknown}")
        margin = price(row, "margin", here)
        # A margin below 1 would make the estimate err low, and a cost cap a wish.
        if not 1 <= margin <= 10:
            raise CatalogError(f"{here}: margin must be between 1 and 10, got {row['margin']!r}")
        out[name] = Tokenizer(
            name=name,
            margin=margin,
            overhead_tokens=count(row, "overhead_tokens", here),
            tools_overhead_tokens=count(row, "tools_overhead_tokens", here),
            basis=text(row, "basis", here),
        )
    return out


def _parse_row(row: object, where: str, tokenizers: Mapping[str, Tokenizer], providers: frozenset[str]) -> ModelEntry:
    if not isinstance(row, dict):
        raise CatalogError(f"{where}: must be a table")
    if isinstance(row.get("id"), str):
        where = f"{where} ({row['id']!r})"
    missing = sorted(_REQUIRED - set(row))
    if missing:
        raise CatalogError(f"{where}: missing fields {missing}")
    unknown = sorted(set(row) - _REQUIRED - _OPTIONAL)
    if unknown:
        raise CatalogError(f"{where}: unknown fields {unknown}")

    provider = text(row, "provider", where)
    if provider not in providers:
        raise CatalogError(f"{where}: unknown provider {provider!r} (known: {', '.join(sorted(providers))})")
    tokenizer_name = text(row, "tokenizer", where)
    if tokenizer_name not in tokenizers:
        known = ", ".join(sorted(tokenizers))
        raise CatalogError(f"{where}: unknown tokenizer {tokenizer_name!r} (known: {known})")
    context_window = positive_int(row, "context_window", where)
    max_output = positive_int(row, "max_output_tokens", where)
    if max_output > context_window:
        raise CatalogError(f"{where}: max_output_tokens {max_output} exceeds context_window")
    cached = price(row, "cached_input_per_mtok", where) if "cached_input_per_mtok" in row else None
    reliability = number(row, "reliability_prior", where)
    if not 0 < reliability <= 1:
        raise CatalogError(f"{where}: reliability_prior must be in (0, 1]")
    quality = number(row, "quality", where)
    if not 0 <= quality <= 1:
        raise CatalogError(f"{where}: quality must be in [0, 1]")
    ttft = number(row, "ttft_ms_prior", where)
    throughput = number(row, "tokens_per_s_prior", where)
    if ttft <= 0 or throughput <= 0:
        raise CatalogError(f"{where}: ttft_ms_prior and tokens_per_s_prior must be positive")

    capabilities = _capabilities(row.get("capabilities"), where)
    unsupported = text_list(row, "unsupported_params", where)
    if not capabilities.streaming and "stream" not in unsupported:
        unsupported = (*unsupported, "stream")  # a stream request is never routed to it
    return ModelEntry(
        id=text(row, "id", where),
        provider=provider,
        upstream_model=text(row, "upstream_model", where),
        aliases=text_list(row, "aliases", where),
        tokenizer=tokenizers[tokenizer_name],
        input_per_mtok=price(row, "input_per_mtok", where),
        output_per_mtok=price(row, "output_per_mtok", where),
        cached_input_per_mtok=cached,
        context_window=context_window,
        max_output_tokens=max_output,
        capabilities=capabilities,
        param_renames=_renames(row.get("param_renames", {}), where),
        unsupported_params=unsupported,
        quality=quality,
        ttft_ms_prior=ttft,
        tokens_per_s_prior=throughput,
        reliability_prior=reliability,
    )


def _check_names(
    models: tuple[ModelEntry, ...], where: str, reserved: frozenset[str], providers: frozenset[str]
) -> None:
    """One row per (provider, id); one catalog id per name; no strategy names."""
    seen_keys: set[str] = set()
    owner: dict[str, str] = {}  # name -> catalog id it resolves to
    for entry in models:
        if entry.key in seen_keys:
            raise CatalogError(f"{where}: duplicate model {entry.key!r}")
        seen_keys.add(entry.key)
        if len(set(entry.names)) != len(entry.names):
            raise CatalogError(f"{where}: {entry.key!r} lists a name twice")
        for name in entry.names:
            if name in reserved:
                raise CatalogError(f"{where}: {entry.key!r} uses the reserved name {name!r}")
            if name.partition(":")[0] in providers and ":" in name:
                raise CatalogError(f"{where}: {entry.key!r} name {name!r} looks like provider:model")
            previous = owner.setdefault(name, entry.id)
            if previous != entry.id:
                # An unprefixed name must never fall back to a different model.
                raise CatalogError(f"{where}: duplicate name {name!r}: used by {previous!r} and {entry.id!r}")


def _capabilities(value: object, where: str) -> Capabilities:
    if not isinstance(value, dict) or set(value) != set(_CAPABILITIES):
        raise CatalogError(f"{where}: capabilities must set exactly {list(_CAPABILITIES)}")
    if not all(isinstance(value[name], bool) for name in _CAPABILITIES):
        raise CatalogError(f"{where}: capabilities values must be true or false")
    return Capabilities(**{name: value[name] for name in _CAPABILITIES})


def _renames(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise CatalogError(f"{where}: param_renames must map parameter names to names")
    return tuple(sorted(value.items()))
