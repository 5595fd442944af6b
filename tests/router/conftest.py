from __future__ import annotations

import pytest

from services.router.catalog import Catalog, load_catalog
from services.router.strategies import STRATEGY_NAMES

#: The second wave's OpenAI-compatible hosts (SPEC.md §11).
HOSTS = frozenset({"fireworks", "cerebras", "openrouter", "perplexity"})
#: Azure's rows are OpenAI's models on an account's own Azure resource.
ALL_PROVIDERS = frozenset(
    {"openai", "anthropic", "gemini", "groq", "deepseek", "mistral", "together", "xai", "azure", "bedrock", *HOSTS}
)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The shipped catalog, validated as the router does at start-up."""
    return load_catalog(reserved_names=STRATEGY_NAMES)
