from __future__ import annotations

import copy
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.router.catalog import (
    Catalog,
    CatalogError,
    default_catalog_text,
    load_catalog,
    parse_catalog,
)
from services.router.strategies import STRATEGY_NAMES

REQUIRED_IDS = {
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini", "o4-mini",
    "llama-3.1-8b-instant", "llama-3.3-70b-versatile", "deepseek-chat", "deepseek-reasoner",
}  # fmt: skip


def shipped() -> dict[str, Any]:
    return tomllib.loads(default_catalog_text())


def with_row_change(index: int, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(shipped())
    data["models"][index].update(changes)
    return data


def test_shipped_catalog_loads(catalog: Catalog) -> None:
    assert catalog.version == "2026-11-01"
    assert {m.id for m in catalog.models} >= REQUIRED_IDS
    assert catalog.providers == {"openai", "groq", "deepseek"}
    assert catalog.quality_source


def test_prices_are_exact_decimals(catalog: Catalog) -> None:
    (gpt4o,) = catalog.resolve("gpt-4o")
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
    with pytest.raises(
        CatalogError, match=r"models\[3\] \('gpt-4.1-mini'\): missing fields \['output_per_mtok'\]"
    ):
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
    assert [e.provider for e in catalog.resolve("gpt-4o")] == ["openai", "groq"]
    assert [e.provider for e in catalog.resolve("gpt-4o-2024-08-06")] == ["openai", "groq"]
    assert [e.provider for e in catalog.resolve("groq:gpt-4o")] == ["groq"]


def test_missing_version_and_empty_models_are_rejected() -> None:
    with pytest.raises(CatalogError, match="version"):
        parse_catalog({"models": shipped()["models"]})
    with pytest.raises(CatalogError, match="at least one"):
        parse_catalog({"version": "x", "models": []})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("version = \n")
    with pytest.raises(CatalogError, match=r"bad\.toml: not valid TOML"):
        load_catalog(path)


def test_lookup_by_id_alias_and_provider_prefix(catalog: Catalog) -> None:
    assert [e.key for e in catalog.resolve("gpt-4o")] == ["openai:gpt-4o"]
    assert [e.key for e in catalog.resolve("gpt-4o-2024-08-06")] == ["openai:gpt-4o"]
    assert [e.key for e in catalog.resolve("openai:gpt-4o")] == ["openai:gpt-4o"]
    assert [e.key for e in catalog.resolve("openai:gpt-4o-2024-08-06")] == ["openai:gpt-4o"]
    assert [e.key for e in catalog.resolve("groq:llama-3.1-8b-instant")] == [
        "groq:llama-3.1-8b-instant"
    ]
    assert catalog.resolve("groq:gpt-4o") == ()
    assert catalog.resolve("gpt-5-ultra") == ()
    assert catalog.resolve("mystery:gpt-4o") == ()
