from __future__ import annotations

import copy
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.providers.adapters import anthropic, bedrock, gemini
from services.router.catalog import (
    Catalog,
    CatalogError,
    default_catalog_text,
    load_catalog,
    parse_catalog,
)
from services.router.strategies import STRATEGY_NAMES
from tests.router.conftest import HOSTS

REQUIRED_IDS = {
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini", "o4-mini",
    "llama-3.1-8b-instant", "llama-3.3-70b", "deepseek-chat", "deepseek-reasoner",
    "claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022", "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-20250219", "mistral-large-latest", "mistral-small-latest",
    "codestral-latest", "grok-3", "grok-3-mini", "gpt-oss-120b", "qwen3-32b", "deepseek-v3",
    "kimi-k2", "sonar", "sonar-pro",
}  # fmt: skip
ALL_PROVIDERS = {"openai", "anthropic", "gemini", "groq", "deepseek", "mistral", "together", "xai", *HOSTS}
ALL_PROVIDERS |= {"azure", "bedrock"}


def shipped() -> dict[str, Any]:
    return tomllib.loads(default_catalog_text())


def with_row_change(index: int, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(shipped())
    data["models"][index].update(changes)
    return data


def test_shipped_catalog_loads(catalog: Catalog) -> None:
    assert catalog.version == "2026-12-05"
    assert {m.id for m in catalog.models} >= REQUIRED_IDS
    assert catalog.providers == ALL_PROVIDERS
    assert catalog.quality_source
    assert len({m.id for m in catalog.models}) >= 25


def test_every_provider_has_several_models(catalog: Catalog) -> None:
    for provider in ALL_PROVIDERS:
        rows = [m for m in catalog.models if m.provider == provider]
        # Cerebras serves one of the catalog's models today (the others it retired).
        assert len(rows) >= (1 if provider == "cerebras" else 2), provider


def test_rows_are_sane(catalog: Catalog) -> None:
    for m in catalog.models:
        assert m.input_per_mtok > 0 and m.output_per_mtok > 0, m.key
        if m.cached_input_per_mtok is not None:
            assert m.cached_input_per_mtok < m.input_per_mtok, m.key
        assert m.capabilities.streaming, m.key
        assert m.max_output_tokens <= m.context_window, m.key
        # A renamed parameter is taken under its new name, never refused under it.
        assert not set(dict(m.param_renames).values()) & set(m.unsupported_params), m.key


def test_tokenizer_margins_err_high(catalog: Catalog) -> None:
    for m in catalog.models:
        if m.provider in ("openai", "azure"):
            # OpenAI's models, on OpenAI or on the account's Azure resource.
            assert m.tokenizer.name == "o200k_base", m.key
        elif m.tokenizer.name.startswith("o200k"):
            # OpenAI's open weights on another host: the same vocabulary, plus the
            # host-rendered chat-format preamble.
            assert m.tokenizer.overhead_tokens > 0, m.key
        else:
            # The corpus bound (tests/router/test_estimate_error.py): 1.30 or more.
            assert m.tokenizer.margin >= Decimal("1.30"), m.key
    (claude,) = catalog.resolve("anthropic:claude-sonnet-4-20250514")
    assert claude.tokenizer.margin == Decimal("1.35")
    assert claude.tokenizer.estimate(1000, needs_tools=False) == 1350
    assert claude.tokenizer.estimate(1000, needs_tools=True) == 1350 + 350
    assert claude.tokenizer.estimate(1, needs_tools=False) == 2  # rounded up, never down


def test_anthropic_refuses_what_the_messages_api_lacks(catalog: Catalog) -> None:
    for m in catalog.models:
        if m.provider == "anthropic":
            assert {"n", "logit_bias", "presence_penalty", "frequency_penalty"} <= set(m.unsupported_params), m.key
            assert m.capabilities.tools and m.capabilities.vision, m.key


def test_every_row_refuses_what_its_wire_formats_translation_refuses(catalog: Catalog) -> None:
    """The router skips a row for a parameter its adapter would answer with a 400
    (no fallback after that), so a strategy never picks a model that then refuses."""
    refused = {"anthropic": anthropic.REFUSED, "bedrock": bedrock.REFUSED, "gemini": gemini.REFUSED}
    for m in catalog.models:
        if m.provider in refused:
            missing = set(refused[m.provider]) - set(m.unsupported_params)
            assert not missing, (m.key, missing)


HOSTED = {
    "llama-3.3-70b": {
        "groq": "llama-3.3-70b-versatile",
        "together": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "fireworks": "accounts/fireworks/models/llama-v3p3-70b-instruct",
        "openrouter": "meta-llama/llama-3.3-70b-instruct",
        "bedrock": "us.meta.llama3-3-70b-instruct-v1:0",
    },
    "gpt-oss-120b": {
        "groq": "openai/gpt-oss-120b",
        "together": "openai/gpt-oss-120b",
        "fireworks": "accounts/fireworks/models/gpt-oss-120b",
        "cerebras": "gpt-oss-120b",
        "openrouter": "openai/gpt-oss-120b",
    },
    "qwen3-32b": {"groq": "qwen/qwen3-32b"},
    "deepseek-v3": {"together": "deepseek-ai/DeepSeek-V3", "fireworks": "accounts/fireworks/models/deepseek-v3-0324"},
    "kimi-k2": {
        "groq": "moonshotai/kimi-k2-instruct-0905",
        "together": "moonshotai/Kimi-K2-Instruct-0905",
        "fireworks": "accounts/fireworks/models/kimi-k2-instruct-0905",
    },
}


@pytest.mark.parametrize("model", sorted(HOSTED))
def test_an_open_model_is_one_name_on_every_host(catalog: Catalog, model: str) -> None:
    rows = catalog.resolve(model)
    assert {e.provider: e.upstream_model for e in rows} == HOSTED[model]
    assert {e.id for e in rows} == {model}
    # One price per host: each row is priced by the host that serves it.
    for entry in rows:
        assert catalog.resolve(f"{entry.provider}:{model}") == (entry,)


def test_a_hosts_own_id_still_names_that_hosts_row(catalog: Catalog) -> None:
    # Ids clients used before the bare ids keep resolving to the same host's row.
    assert [e.key for e in catalog.resolve("llama-3.3-70b-versatile")] == ["groq:llama-3.3-70b"]
    assert [e.key for e in catalog.resolve("meta-llama/Llama-3.3-70B-Instruct-Turbo")] == ["together:llama-3.3-70b"]
    assert [e.key for e in catalog.resolve("deepseek-ai/DeepSeek-V3")] == ["together:deepseek-v3"]
    assert [e.key for e in catalog.resolve("groq:llama-3.3-70b-versatile")] == ["groq:llama-3.3-70b"]
    assert catalog.resolve("together:llama-3.3-70b-versatile") == ()
    # A name for the same weights everywhere is an alias on every host that serves them.
    assert {e.provider for e in catalog.resolve("openai/gpt-oss-120b")} == set(HOSTED["gpt-oss-120b"])
    assert {e.provider for e in catalog.resolve("kimi-k2-instruct-0905")} == set(HOSTED["kimi-k2"])


def test_an_alias_of_another_model_is_refused_even_on_another_host() -> None:
    data = shipped()
    row = next(r for r in data["models"] if r["provider"] == "fireworks" and r["id"] == "kimi-k2")
    row["aliases"] = ["llama-3.3-70b-versatile"]
    with pytest.raises(CatalogError, match=r"duplicate name 'llama-3\.3-70b-versatile'"):
        parse_catalog(data)


def test_mistral_latest_names_pin_a_dated_upstream(catalog: Catalog) -> None:
    (large,) = catalog.resolve("mistral-large-latest")
    assert large.upstream_model == "mistral-large-2512"
    assert dict(large.param_renames) == {"seed": "random_seed"}


def test_prices_are_exact_decimals(catalog: Catalog) -> None:
    (gpt4o,) = catalog.resolve("openai:gpt-4o")
    assert gpt4o.input_per_mtok == Decimal("2.50")
    assert gpt4o.output_per_mtok == Decimal("10.00")
    assert gpt4o.cached_input_per_mtok == Decimal("1.25")
    (groq8b,) = catalog.resolve("llama-3.1-8b-instant")
    assert groq8b.cached_input_per_mtok is None


def test_reasoning_models_rename_max_tokens_and_refuse_sampling(catalog: Catalog) -> None:
    for name in ("o3-mini", "o4-mini"):
        (entry,) = catalog.resolve(name)
        assert dict(entry.param_renames) == {"max_tokens": "max_completion_tokens"}
        assert {"temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs"} <= set(
            entry.unsupported_params
        )


def test_load_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(default_catalog_text())
    assert len(load_catalog(path).models) == len(load_catalog().models)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"provider": "openia"}, "unknown provider 'openia'"),
        ({"input_per_mtok": "-1"}, "input_per_mtok must be a finite non-negative price"),
        ({"output_per_mtok": 2.5}, "output_per_mtok must be a decimal string"),
        ({"output_per_mtok": "cheap"}, "is not a decimal number"),
        ({"context_window": 0}, "context_window must be a positive integer"),
        ({"max_output_tokens": 10**9}, "max_output_tokens 1000000000 exceeds context_window"),
        ({"quality": 1.5}, "quality must be in [0, 1]"),
        ({"reliability_prior": 0}, "reliability_prior must be in (0, 1]"),
        ({"capabilities": {"tools": True}}, "capabilities must set exactly"),
        ({"input_per_mtoken": "1"}, "unknown fields ['input_per_mtoken']"),
        ({"aliases": ["gpt-4o-mini"]}, "duplicate name 'gpt-4o-mini'"),
        ({"aliases": ["lowest-cost"]}, "reserved name 'lowest-cost'"),
        ({"tokenizer": "sentencepiece"}, "unknown tokenizer 'sentencepiece'"),
    ],
)
def test_bad_row_is_rejected_with_a_clear_message(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog(with_row_change(0, **changes), reserved_names=STRATEGY_NAMES)
    assert message in str(err.value)


def test_bad_row_message_names_the_file_and_the_row() -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog(with_row_change(2, provider="openia"), source="ops.toml")
    assert str(err.value).startswith("catalog ops.toml: models[2] ('gpt-4.1'): unknown provider")


def test_missing_field_is_named() -> None:
    data = shipped()
    del data["models"][3]["output_per_mtok"]
    with pytest.raises(CatalogError, match=r"models\[3\] \('gpt-4.1-mini'\): missing fields \['output_per_mtok'\]"):
        parse_catalog(data)


def test_duplicate_provider_and_id_is_rejected() -> None:
    data = shipped()
    data["models"].append(copy.deepcopy(data["models"][0]))
    with pytest.raises(CatalogError, match="duplicate model 'openai:gpt-4o'"):
        parse_catalog(data)


def test_same_model_under_two_providers_is_allowed() -> None:
    data = shipped()
    twin = copy.deepcopy(data["models"][0]) | {"provider": "groq", "input_per_mtok": "2.00"}
    data["models"].append(twin)
    catalog = parse_catalog(data)
    assert [e.provider for e in catalog.resolve("gpt-4o")] == ["openai", "azure", "groq"]
    assert [e.provider for e in catalog.resolve("gpt-4o-2024-08-06")] == ["openai", "azure", "groq"]
    assert [e.provider for e in catalog.resolve("groq:gpt-4o")] == ["groq"]


def test_missing_version_and_empty_models_are_rejected() -> None:
    tokenizers = shipped()["tokenizers"]
    with pytest.raises(CatalogError, match="version"):
        parse_catalog({"models": shipped()["models"], "tokenizers": tokenizers})
    with pytest.raises(CatalogError, match="at least one"):
        parse_catalog({"version": "x", "models": [], "tokenizers": tokenizers})
    with pytest.raises(CatalogError, match=r"needs a \[tokenizers\] table"):
        parse_catalog({"version": "x", "models": shipped()["models"]})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"margin": "0.9"}, "margin must be between 1 and 10"),
        ({"margin": 1.2}, "margin must be a decimal string"),
        ({"overhead_tokens": -1}, "overhead_tokens must be a non-negative integer"),
        ({"basis": ""}, "basis must be a non-empty string"),
        ({"factor": "2"}, "unknown fields ['factor']"),
    ],
)
def test_bad_tokenizer_is_rejected(changes: dict[str, Any], message: str) -> None:
    data = copy.deepcopy(shipped())
    data["tokenizers"]["claude"].update(changes)
    with pytest.raises(CatalogError) as err:
        parse_catalog(data)
    assert "tokenizers.claude" in str(err.value)
    assert message in str(err.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("version = \n")
    with pytest.raises(CatalogError, match=r"bad\.toml: not valid TOML"):
        load_catalog(path)


def test_lookup_by_id_alias_and_provider_prefix(catalog: Catalog) -> None:
    # OpenAI's model, also on Azure (one row per provider, SPEC.md §11).
    assert [e.key for e in catalog.resolve("gpt-4o")] == ["openai:gpt-4o", "azure:gpt-4o"]
    assert [e.key for e in catalog.resolve("gpt-4o-2024-08-06")] == ["openai:gpt-4o", "azure:gpt-4o"]
    assert [e.key for e in catalog.resolve("azure:gpt-4o-2024-08-06")] == ["azure:gpt-4o"]
    assert [e.key for e in catalog.resolve("openai:gpt-4o")] == ["openai:gpt-4o"]
    assert [e.key for e in catalog.resolve("openai:gpt-4o-2024-08-06")] == ["openai:gpt-4o"]
    assert [e.key for e in catalog.resolve("groq:llama-3.1-8b-instant")] == ["groq:llama-3.1-8b-instant"]
    assert catalog.resolve("groq:gpt-4o") == ()
    assert catalog.resolve("gpt-5-ultra") == ()
    assert catalog.resolve("mystery:gpt-4o") == ()


def test_bedrock_rows_name_bedrock_ids_at_the_same_price_as_the_model_makers(catalog: Catalog) -> None:
    rows = {m.id: m for m in catalog.models if m.provider == "bedrock"}
    assert set(rows) >= {"claude-3-5-haiku-20241022", "claude-sonnet-4-20250514", "llama-3.3-70b"}
    assert set(rows) >= {"mistral-large-2407", "nova-pro", "nova-lite", "nova-micro"}
    for m in rows.values():
        # A Bedrock model id (provider.model-vN:N), or the US inference profile of one.
        assert re.fullmatch(r"(us\.)?[a-z]+\.[a-z0-9.-]+-v\d+:\d+", m.upstream_model), m.key
        # Converse has no field for these: the router routes such requests elsewhere.
        assert {"seed", "top_k", "n", "logprobs"} <= set(m.unsupported_params), m.key
        assert not m.capabilities.json_schema, m.key
        # JSON through a forced tool: only the models that take a named toolChoice.
        forced_tool = m.id.startswith(("claude", "mistral"))
        assert ("response_format" not in m.unsupported_params) == forced_tool, m.key
    # Claude on Bedrock costs what it costs at Anthropic.
    for claude in ("claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"):
        (anthropic,) = catalog.resolve(f"anthropic:{claude}")
        prices = (rows[claude].input_per_mtok, rows[claude].output_per_mtok, rows[claude].cached_input_per_mtok)
        assert prices == (anthropic.input_per_mtok, anthropic.output_per_mtok, anthropic.cached_input_per_mtok)
    # A bare Claude id falls back between Anthropic and Bedrock; Bedrock's own id pins Bedrock.
    assert {e.provider for e in catalog.resolve("claude-3-5-haiku-20241022")} == {"anthropic", "bedrock"}
    assert [e.key for e in catalog.resolve("amazon.nova-pro-v1:0")] == ["bedrock:nova-pro"]
