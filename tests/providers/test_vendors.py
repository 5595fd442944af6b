from __future__ import annotations

from pathlib import Path

import pytest

from services.providers.vendors import load_vendors


def test_shipped_table_loads_with_the_real_endpoints() -> None:
    vendors = load_vendors()
    assert vendors["openai"].base_url == "https://api.openai.com/v1"
    assert vendors["groq"].base_url == "https://api.groq.com/openai/v1"
    assert vendors["deepseek"].base_url == "https://api.deepseek.com/v1"
    assert vendors["anthropic"].url("/v1/messages") == "https://api.anthropic.com/v1/messages"
    assert vendors["openai"].url("/chat/completions") == "https://api.openai.com/v1/chat/completions"
    assert vendors["fireworks"].url("/chat/completions") == "https://api.fireworks.ai/inference/v1/chat/completions"
    assert vendors["cerebras"].url("/chat/completions") == "https://api.cerebras.ai/v1/chat/completions"
    assert vendors["openrouter"].url("/chat/completions") == "https://openrouter.ai/api/v1/chat/completions"
    assert vendors["perplexity"].url("/chat/completions") == "https://api.perplexity.ai/chat/completions"
    assert {name for name, v in vendors.items() if v.wire_format == "openai_compatible"} == {
        "openai",
        "groq",
        "deepseek",
        "mistral",
        "together",
        "xai",
        "fireworks",
        "cerebras",
        "openrouter",
        "perplexity",
        "local",
        "demo",
    }
    assert vendors["anthropic"].wire_format == "anthropic"
    # The operator's endpoints have no default: only STEPBLEND_<NAME>_BASE_URL gives one,
    # and only the operator connects them for an account.
    operators = {"local", "demo", "demo_anthropic", "demo_gemini"}
    assert not any(vendors[name].configured for name in operators)
    assert {name for name, v in vendors.items() if v.operator_only} == operators
    assert all(v.configured for name, v in vendors.items() if name not in operators)


def test_environment_overrides_the_base_url() -> None:
    vendors = load_vendors({"openai": "http://127.0.0.1:9001/v1", "anthropic": "http://127.0.0.1:9002/"})
    assert vendors["openai"].url("/chat/completions") == "http://127.0.0.1:9001/v1/chat/completions"
    assert vendors["anthropic"].url("/v1/messages") == "http://127.0.0.1:9002/v1/messages"
    local = load_vendors({"local": "http://127.0.0.1:11434/v1"})["local"]
    assert local.configured and local.url("/chat/completions") == "http://127.0.0.1:11434/v1/chat/completions"


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ('wire_format = "smoke_signals"\nbase_url = "https://x"', "unknown wire format"),
        ('wire_format = "openai_compatible"\nbase_url = "ftp://x"', "base_url"),
        ('wire_format = "openai_compatible"\nbase_url = "https://x"\nquirks = { teleports = true }', "unknown quirks"),
        ('wire_format = "openai_compatible"\nbase_url = "https://x"\nprice = 3', "unknown keys"),
        ('wire_format = "openai_compatible"\nquirks = { refused_params = "n" }', "list of strings"),
        ('wire_format = "anthropic"\nquirks = { default_max_tokens = 0 }', "positive integer"),
        ('wire_format = "openai_compatible"\noperator_only = "yes"', "operator_only must be true or false"),
    ],
)
def test_bad_rows_are_refused_naming_the_provider(tmp_path: Path, row: str, error: str) -> None:
    path = tmp_path / "vendors.toml"
    path.write_text(f"[providers.acme]\n{row}\n")
    with pytest.raises(ValueError, match=error) as refused:
        load_vendors(path=path)
    assert "acme" in str(refused.value)
