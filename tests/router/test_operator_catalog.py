"""The operator's catalog file extends the packaged catalog, and its rows may name the
operator's own vendors (STEPBLEND_VENDORS_FILE): what the router then accepts,
resolves and routes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.common.vendors_file import VendorsFileError
from services.router.catalog import CatalogError, load_catalog
from services.router.main import RouterOptions, catalog_from_env
from services.router.routing import Decision, Refusal, RouteRequest, route
from services.router.strategies import STRATEGY_NAMES

OLLAMA_VENDOR = '[providers.ollama]\nwire_format = "openai_compatible"\nbase_url = "http://127.0.0.1:11434/v1"\n'


def row(model: str, provider: str, **fields: object) -> str:
    values: dict[str, object] = {
        "id": model,
        "provider": provider,
        "upstream_model": model,
        "tokenizer": "llama3",
        "input_per_mtok": "0",
        "output_per_mtok": "0",
        "context_window": 131072,
        "max_output_tokens": 8192,
        "quality": 0.5,
        "ttft_ms_prior": 300,
        "tokens_per_s_prior": 40,
        "reliability_prior": 0.99,
        **fields,
    }
    lines = [f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}" for k, v in values.items()]
    capabilities = "capabilities = { tools = false, vision = false, json_schema = false, streaming = true }"
    return "[[models]]\n" + "\n".join([*lines, capabilities]) + "\n"


def test_a_row_that_cannot_stream_is_never_routed_a_stream(tmp_path: Path) -> None:
    text = row("batch-only", "openai").replace("streaming = true", "streaming = false")
    catalog = load_catalog(write(tmp_path, "catalog.toml", text))
    ask = dict(connected_providers=("openai",))
    refused = route(catalog, RouteRequest(model="batch-only", params=frozenset({"stream"}), **ask))  # type: ignore[arg-type]
    assert isinstance(refused, Refusal) and refused.param == "stream", refused
    assert "batch-only does not take stream" in refused.message
    assert isinstance(route(catalog, RouteRequest(model="batch-only", **ask)), Decision)  # type: ignore[arg-type]
    # A strategy asked to stream passes it over for a model that can.
    streamed = route(catalog, RouteRequest(model="lowest-cost", params=frozenset({"stream"}), **ask))  # type: ignore[arg-type]
    assert isinstance(streamed, Decision) and "batch-only" not in {c.model for c in streamed.candidates}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_file_adds_its_rows_to_the_packaged_catalog(tmp_path: Path) -> None:
    packaged = load_catalog()
    catalog = load_catalog(write(tmp_path, "catalog.toml", row("my-finetune", "openai")))
    assert catalog.models[: len(packaged.models)] == packaged.models
    assert [m.key for m in catalog.models[len(packaged.models) :]] == ["openai:my-finetune"]
    # No version of its own: the packaged one stands.
    assert catalog.version == packaged.version
    assert catalog.resolve("gpt-4o") and catalog.resolve("my-finetune")


def test_a_row_with_a_packaged_key_replaces_it_in_place(tmp_path: Path) -> None:
    packaged = load_catalog()
    where = next(i for i, m in enumerate(packaged.models) if m.key == "openai:gpt-4o")
    text = 'version = "ops-1"\n' + row("gpt-4o", "openai", tokenizer="o200k_base", input_per_mtok="2.00")
    catalog = load_catalog(write(tmp_path, "catalog.toml", text))
    assert len(catalog.models) == len(packaged.models)
    assert catalog.models[where].key == "openai:gpt-4o"
    assert catalog.models[where].input_per_mtok == Decimal("2.00")
    # Its aliases are the file's: the packaged row is gone, not merged.
    assert catalog.models[where].aliases == ()
    assert "openai" not in {e.provider for e in catalog.resolve("gpt-4o-2024-08-06")}  # azure's keeps it
    assert catalog.version == "ops-1"


def test_extends_false_makes_the_file_the_whole_catalog(tmp_path: Path) -> None:
    text = 'extends = false\nversion = "mine"\n[tokenizers.llama3]\nmargin = "1.2"\nbasis = "x"\n' + row("m", "groq")
    catalog = load_catalog(write(tmp_path, "catalog.toml", text))
    assert [m.key for m in catalog.models] == ["groq:m"]
    assert not catalog.resolve("gpt-4o")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('extends = "yes"\n' + row("m", "openai"), "`extends` must be true or false"),
        (row("m", "openai", tokenizer="nope"), "unknown tokenizer 'nope'"),
        (row("gpt-4o-mini", "openai", aliases=["gpt-4o"]), "duplicate name 'gpt-4o'"),
        (row("m", "openai") + row("m", "openai"), "duplicate model 'openai:m'"),
        # Without the vendors file, a row naming the operator's vendor is a typo.
        (row("llama3.2:3b", "ollama"), "unknown provider 'ollama'"),
    ],
)
def test_a_bad_extending_file_stops_the_router_naming_it(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, "catalog.toml", text)
    with pytest.raises(CatalogError, match=error) as raised:
        load_catalog(path, reserved_names=STRATEGY_NAMES)
    assert str(path) in str(raised.value)


def test_rows_may_name_the_operators_vendor_and_resolve_with_a_colon_in_the_id(tmp_path: Path) -> None:
    path = write(tmp_path, "catalog.toml", row("llama3.2:3b", "ollama", upstream_model="llama3.2:3b"))
    catalog = load_catalog(path, vendors={"ollama"})
    pinned, plain = catalog.resolve("ollama:llama3.2:3b"), catalog.resolve("llama3.2:3b")
    assert [m.key for m in pinned] == [m.key for m in plain] == ["ollama:llama3.2:3b"]
    assert not catalog.resolve("groq:llama3.2:3b")
    # A name that reads as the vendor's prefix cannot be an id.
    with pytest.raises(CatalogError, match="looks like provider:model"):
        load_catalog(write(tmp_path, "bad.toml", row("ollama:x", "ollama")), vendors={"ollama"})


def test_only_an_account_connected_to_the_vendor_is_routed_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, "catalog.toml", row("llama3.2:3b", "ollama"))
    catalog = load_catalog(path, vendors={"ollama"}, reserved_names=STRATEGY_NAMES)
    allowed = route(catalog, RouteRequest(model="ollama:llama3.2:3b", connected_providers=frozenset({"ollama"})))
    assert isinstance(allowed, Decision)
    assert [(c.provider, c.upstream_model) for c in allowed.candidates] == [("ollama", "llama3.2:3b")]
    # Every other account: its keys do not include the vendor.
    other = route(catalog, RouteRequest(model="llama3.2:3b", connected_providers=frozenset({"openai", "groq"})))
    assert isinstance(other, Refusal) and other.code.value == "provider_not_connected"


def test_catalog_from_env_reads_both_files(tmp_path: Path) -> None:
    vendors = write(tmp_path, "vendors.toml", OLLAMA_VENDOR)
    catalog_file = write(tmp_path, "catalog.toml", row("llama3.2:3b", "ollama"))
    options = RouterOptions.from_env(
        {"STEPBLEND_CATALOG_FILE": str(catalog_file), "STEPBLEND_VENDORS_FILE": str(vendors)}
    )
    catalog = catalog_from_env(options)
    assert "ollama" in catalog.providers and catalog.resolve("gpt-4o")
    # No vendors file: the same catalog stops the router.
    with pytest.raises(CatalogError, match="unknown provider 'ollama'"):
        catalog_from_env(RouterOptions(catalog_file=str(catalog_file)))


@pytest.mark.parametrize("name", ["openai", "local", "demo"])
def test_a_vendor_named_as_a_packaged_one_stops_the_router(tmp_path: Path, name: str) -> None:
    vendors = write(tmp_path, "vendors.toml", OLLAMA_VENDOR.replace("ollama", name))
    with pytest.raises(VendorsFileError, match=f"provider '{name}': the name is a packaged provider's"):
        catalog_from_env(RouterOptions(vendors_file=str(vendors)))
