"""OpenAI's Chat Completions objects as StepBlend reads them from any OpenAI-compatible
provider: msgspec Structs named after OpenAI's documented objects, each declaring only
the fields the adapter reads.

They are read views, not copies: the answers and chunks themselves are forwarded as
the provider wrote them (with StepBlend's id and model), so the fields a vendor adds
(DeepSeek's `reasoning_content`, OpenAI's `obfuscation`) reach the client untouched.
Unknown fields are skipped; a field StepBlend reads that has the wrong type is a
provider not speaking the format (`base.convert` makes it an `UpstreamFormatError`).

Error bodies are read more leniently (`error_said`): they come in vendors' variants
— OpenAI's `{"error": {...}}`, a bare `{"error": "..."}`, Mistral's flat
`{"object": "error", "message": ..., "type": ...}` whose message may be a validation
report, FastAPI's `{"detail": ...}` (vLLM) — and one that fits none of them still
says nothing rather than failing the read.
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.providers.adapters.base import ProviderError, TokenCount, TokenUsage

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "CompletionUsage",
    "UsageEnvelope",
    "error_said",
]

_MAX_ERROR_CHARS = 500


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: TokenCount | None = None


class CompletionUsage(msgspec.Struct):
    """OpenAI's `usage`; `prompt_cache_hit_tokens` is DeepSeek's name for cached tokens."""

    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    total_tokens: TokenCount | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    prompt_cache_hit_tokens: TokenCount | None = None

    def tokens(self) -> TokenUsage:
        prompt = self.prompt_tokens or 0
        completion = self.completion_tokens or 0
        details = self.prompt_tokens_details
        cached = (details.cached_tokens if details is not None else None) or self.prompt_cache_hit_tokens or 0
        return TokenUsage(prompt, completion, self.total_tokens or prompt + completion, cached)


class UsageEnvelope(msgspec.Struct):
    """A vendor's own object that carries `usage` in a stream (Groq's `x_groq`)."""

    usage: CompletionUsage | None = None


class ChatCompletionChoice(msgspec.Struct):
    finish_reason: str | None = None


class ChatCompletion(msgspec.Struct):
    """A `chat.completion`: its `choices` must be there."""

    choices: list[ChatCompletionChoice]
    usage: CompletionUsage | None = None


class ChunkChoice(msgspec.Struct):
    finish_reason: str | None = None


class ChatCompletionChunk(msgspec.Struct):
    """A `chat.completion.chunk`: no `choices` (or none) is a usage-only chunk."""

    choices: list[ChunkChoice] | None = None
    usage: CompletionUsage | None = None

    @property
    def finished(self) -> bool:
        """Whether a choice ends here (a finish reason is given)."""
        # A loop, not any(): this runs on every chunk, and a generator costs more than the read.
        for choice in self.choices or ():  # noqa: SIM110
            if choice.finish_reason:
                return True
        return False


class ValidationIssue(msgspec.Struct):
    """One item of a pydantic/FastAPI validation report (Mistral's 422, vLLM's 400)."""

    loc: list[str | int] = []
    msg: str = "invalid"


class ValidationDetail(msgspec.Struct):
    detail: str | list[ValidationIssue] | None = None


Said = str | list[ValidationIssue] | ValidationDetail | None


class ErrorObject(msgspec.Struct):
    """OpenAI's error object (`code` is a number at some vendors: not kept)."""

    message: Said = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(msgspec.Struct):
    """Every vendor variant of an error body in one (see the module docstring)."""

    error: ErrorObject | str | None = None
    message: Said = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None
    detail: str | list[ValidationIssue] | None = None


def error_said(obj: Any) -> ProviderError:
    """What an error body (loaded JSON) says; `ProviderError()` when it fits no variant."""
    try:
        body = msgspec.convert(obj, ErrorResponse)
    except msgspec.ValidationError:
        return ProviderError()
    error = body.error
    if isinstance(error, ErrorObject):
        said, param, code, kind = error.message, error.param, error.code, error.type
    elif error:
        said, param, code, kind = error, None, None, None
    elif body.message:
        said, param, code, kind = body.message, body.param, body.code, body.type
    else:
        said, param, code, kind = body.detail, None, None, None
    if isinstance(said, ValidationDetail):
        said = said.detail
    if isinstance(said, list):
        said, param = _validation_report(said, param)
    return ProviderError(
        (said or "")[:_MAX_ERROR_CHARS], param or "", code if isinstance(code, str) else "", kind or ""
    )


def _validation_report(issues: list[ValidationIssue], param: str | None) -> tuple[str, str | None]:
    """A validation report as one line: `stream_options: Extra inputs are not permitted`."""
    parts: list[str] = []
    for issue in issues:
        where = [str(p) for p in issue.loc if p != "body"]
        parts.append(f"{'.'.join(where)}: {issue.msg}" if where else issue.msg)
        if not param and where:
            param = where[0]
    return "; ".join(parts) or "invalid request", param
