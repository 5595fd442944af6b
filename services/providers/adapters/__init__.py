"""Wire-format adapters, one module per format (Groq, DeepSeek, Mistral… are rows of
`vendors.toml`, not modules). `make_adapter` builds one from a vendor's row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.providers.adapters import anthropic, azure, bedrock, gemini, openai_compatible
from services.providers.adapters.base import (
    Adapter,
    HoldsBack,
    ProviderError,
    RequestRefused,
    StreamTranslator,
    TokenUsage,
    UpstreamFormatError,
    UpstreamRequest,
    UpstreamStreamError,
    parse_body,
)

WIRE_FORMATS = ("openai_compatible", "anthropic", "gemini", "azure", "bedrock")


def make_adapter(wire_format: str, quirks: Mapping[str, Any]) -> Adapter:
    """The adapter for `wire_format` with a vendor's quirks; ValueError when unknown."""
    if wire_format == "openai_compatible":
        return openai_compatible.OpenAICompatible(openai_compatible.Quirks.parse(quirks))
    if wire_format == "anthropic":
        return anthropic.Anthropic(anthropic.Quirks.parse(quirks))
    if wire_format == "gemini":
        return gemini.Gemini(gemini.Quirks.parse(quirks))
    if wire_format == "azure":
        return azure.Azure(azure.Quirks.parse(quirks))
    if wire_format == "bedrock":
        return bedrock.Bedrock(bedrock.Quirks.parse(quirks))
    raise ValueError(f"unknown wire format {wire_format!r} (known: {', '.join(WIRE_FORMATS)})")


__all__ = [
    "WIRE_FORMATS",
    "Adapter",
    "HoldsBack",
    "ProviderError",
    "RequestRefused",
    "StreamTranslator",
    "TokenUsage",
    "UpstreamFormatError",
    "UpstreamRequest",
    "UpstreamStreamError",
    "make_adapter",
    "parse_body",
]
