from __future__ import annotations

from pathlib import Path

import pytest

from services.providers.vendors import load_vendors


def test_shipped_table_loads_with_the_real_endpoints() -> None:
    vendors = load_vendors()
    assert vendors["openai"].base_url == "https://api.openai.com/v1"
    assert vendors["groq"].base_url == "https://api.groq.com/openai/v1"
    assert vendors["deepseek"].base_url == "https://api.deepseek.com/v1"
    assert {v.wire_format for v in vendors.values()} == {"openai_compatible"}
    assert vendors["openai"].url("/chat/completions") == "https://api.openai.com/v1/chat/completions"


def test_environment_overrides_the_base_url() -> None:
    vendors = load_vendors({"openai": "http://127.0.0.1:9001/v1"})
    assert vendors["openai"].url("/chat/completions") == "http://127.0.0.1:9001/v1/chat/completions"


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ('wire_format = "smoke_signals"\nbase_url = "https://x"', "unknown wire format"),
        ('wire_format = "openai_compatible"\nbase_url = "ftp://x"', "base_url"),
        ('wire_format = "openai_compatible"\nbase_url = "https://x"\nquirks = { teleports = true }', "unknown quirks"),
        ('wire_format = "openai_compatible"\nbase_url = "https://x"\nprice = 3', "unknown keys"),
    ],
)
def test_bad_rows_are_refused_naming_the_provider(tmp_path: Path, row: str, error: str) -> None:
    path = tmp_path / "vendors.toml"
    path.write_text(f"[providers.acme]\n{row}\n")
    with pytest.raises(ValueError, match=error) as refused:
        load_vendors(path=path)
    assert "acme" in str(refused.value)
