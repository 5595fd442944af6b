"""How each OpenAI-compatible vendor departs from OpenAI's wire format, as far as
StepBlend's adapter must cope with it. The mock serves each at
`/<flavour>/v1/chat/completions` (OpenAI's at `{prefix}/chat/completions`), so one
mock process stands for every vendor.

    openai    the reference: usage in a last `choices: []` chunk when asked
    groq      usage in `x_groq.usage` of the finish chunk (and, when asked, also a
              usage chunk); 400 for logprobs, top_logprobs, logit_bias, n > 1
    deepseek  `*reasoner*` models stream `reasoning_content` before the content;
              400 when a message carries `reasoning_content`; usage counts cache
              hits as `prompt_cache_hit_tokens`
    mistral   422 "Extra inputs are not permitted" for any field outside its schema
              (stream_options included); usage on the finish chunk, unasked
    together  usage on the finish chunk, asked or not
    xai       when asked, usage on the finish chunk, then an empty `choices: []`
              chunk without usage
    fireworks as OpenAI, with path-shaped model ids (accounts/fireworks/models/...)
    cerebras  400 for frequency_penalty, presence_penalty, logit_bias,
              parallel_tool_calls, service_tier
    openrouter  as OpenAI, and every answer and chunk names the host that served
              it in `provider`
    perplexity  every answer and chunk carries `citations` and `search_results`
              (the web sources of the answer); usage on the finish chunk, unasked
    local     vLLM / Ollama: as OpenAI
    ollama    Ollama's OpenAI-compatible API (an operator's vendor in the tests):
              `system_fingerprint: "fp_ollama"` on every answer and chunk; a model
              not pulled (only `OLLAMA_PULLED` are) is a 404 "model ... not found,
              try pulling it first"
    azure     Azure OpenAI past its edges (azure.py): every answer and chunk
              carries the content filter's `prompt_filter_results`
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MISTRAL_PARAMS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
        "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
        "prediction", "parallel_tool_calls", "safe_prompt", "prompt_mode",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Flavour:
    name: str
    # Mistral: the only top-level fields it takes; others are a 422.
    accepted_params: frozenset[str] | None = None
    # Groq: fields answered with a 400 when not null.
    refused_params: frozenset[str] = frozenset()
    max_n: int | None = None
    x_groq: bool = False
    usage_on_finish: bool = False
    usage_on_finish_when_asked: bool = False
    reasoner_marker: str = ""
    refuses_reasoning_content: bool = False
    cache_hit_fields: bool = False
    # Top-level fields the vendor adds to every answer and chunk (OpenRouter's
    # `provider`, Perplexity's `citations` and `search_results`).
    answer_fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Ollama: the only models it has (any other is a 404).
    pulled: frozenset[str] | None = None

    def refusal(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The vendor's error status and body for what it refuses, or None."""
        model = body.get("model")
        if self.pulled is not None and isinstance(model, str) and model not in self.pulled:
            message = f'model "{model}" not found, try pulling it first'
            return 404, {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
        if self.accepted_params is not None:
            extra = [key for key in body if key not in self.accepted_params]
            if extra:
                detail = [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", key],
                        "msg": "Extra inputs are not permitted",
                        "input": body[key],
                    }
                    for key in extra
                ]
                return 422, {
                    "object": "error",
                    "message": {"detail": detail},
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
        for param in sorted(self.refused_params):
            if body.get(param) is not None:
                return 400, _openai_error(f"'{param}' : is not supported with this model", param)
        n = body.get("n")
        if self.max_n is not None and isinstance(n, int) and n > self.max_n:
            return 400, _openai_error(f"'n' : number must be at most {self.max_n}", "n")
        if self.refuses_reasoning_content:
            for message in body.get("messages") or []:
                if isinstance(message, dict) and "reasoning_content" in message:
                    return 400, _openai_error("reasoning_content is not allowed in input messages", "messages")
        return None

    def reasons(self, model: str) -> bool:
        return bool(self.reasoner_marker) and self.reasoner_marker in model


def _openai_error(message: str, param: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


#: Perplexity's web sources, as its answers list them (docs.perplexity.ai).
PERPLEXITY_SOURCES = MappingProxyType(
    {
        "citations": ["https://example.com/hello"],
        "search_results": [
            {"title": "Saying hello", "url": "https://example.com/hello", "date": "2026-01-01", "snippet": "Hello!"}
        ],
    }
)
#: The models the mock's Ollama has pulled (`ollama pull llama3.2:3b`).
OLLAMA_PULLED = frozenset({"llama3.2:3b", "qwen2.5:0.5b"})
CEREBRAS_REFUSED = frozenset(
    {"frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls", "service_tier"}
)

#: Azure's report on the prompt, as its answers carry it (learn.microsoft.com/azure/ai-services/openai/concepts/content-filter).
AZURE_PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")
        },
    }
]

FLAVOURS: dict[str, Flavour] = {
    "openai": Flavour("openai"),
    "groq": Flavour("groq", refused_params=frozenset({"logprobs", "top_logprobs", "logit_bias"}), max_n=1, x_groq=True),
    "deepseek": Flavour("deepseek", reasoner_marker="reasoner", refuses_reasoning_content=True, cache_hit_fields=True),
    "mistral": Flavour("mistral", accepted_params=MISTRAL_PARAMS, usage_on_finish=True),
    "together": Flavour("together", usage_on_finish=True),
    "xai": Flavour("xai", usage_on_finish_when_asked=True),
    "fireworks": Flavour("fireworks"),
    "cerebras": Flavour("cerebras", refused_params=CEREBRAS_REFUSED),
    "openrouter": Flavour("openrouter", answer_fields=MappingProxyType({"provider": "Mock Host"})),
    "perplexity": Flavour("perplexity", usage_on_finish=True, answer_fields=PERPLEXITY_SOURCES),
    "local": Flavour("local"),
    "ollama": Flavour(
        "ollama", answer_fields=MappingProxyType({"system_fingerprint": "fp_ollama"}), pulled=OLLAMA_PULLED
    ),
    "azure": Flavour("azure", answer_fields=MappingProxyType({"prompt_filter_results": AZURE_PROMPT_FILTER})),
}
