"""Google Gemini API objects as StepBlend reads them (`GenerateContentResponse` and its
parts, `UsageMetadata`, the error body): msgspec Structs named after Google's documented
types (ai.google.dev/api/generate-content), each declaring only the fields the adapter
reads, in the API's camelCase on the wire.

A stream (`streamGenerateContent?alt=sse`) is a sequence of whole
`GenerateContentResponse`s, one per SSE event, so one model serves both. A `Part` is
one Struct whatever it carries (text, a function call, a thought, or a kind added
since, which is skipped). Unknown fields are skipped; a field StepBlend reads that has
the wrong type is a provider not speaking the format (`base.decode` makes it an
`UpstreamFormatError`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.providers.adapters.base import TokenCount, TokenUsage

__all__ = [
    "ERROR",
    "RESPONSE",
    "Candidate",
    "Content",
    "ErrorBody",
    "FunctionCall",
    "GenerateContentResponse",
    "Part",
    "UsageMetadata",
]


class FunctionCall(msgspec.Struct, rename="camel"):
    """A call the model makes: `args` is a JSON object; `id` only where the API gives one."""

    name: str = ""
    args: dict[str, Any] | None = None
    id: str | None = None


class Part(msgspec.Struct, rename="camel"):
    """One part of a `Content`: `text` (a thought summary when `thought` is true) or a
    `functionCall`; `thoughtSignature` is the opaque token Gemini asks to get back with
    the part it came on."""

    text: str | None = None
    thought: bool | None = None
    function_call: FunctionCall | None = None
    thought_signature: str | None = None


class Content(msgspec.Struct, rename="camel"):
    role: str | None = None
    parts: list[Part] | None = None


class Candidate(msgspec.Struct, rename="camel"):
    """One answer; `finishReason` is set on the last chunk of a stream only."""

    content: Content | None = None
    finish_reason: str | None = None
    index: int | None = None


class PromptFeedback(msgspec.Struct, rename="camel"):
    """Set when the prompt itself was blocked (then there are no candidates)."""

    block_reason: str | None = None


class UsageMetadata(msgspec.Struct, rename="camel"):
    """Gemini's token counts. `promptTokenCount` includes the cached tokens;
    `candidatesTokenCount` excludes the thinking tokens, which are billed as output;
    `toolUsePromptTokenCount` (the results of Google's own tools) is billed as input."""

    prompt_token_count: TokenCount | None = None
    candidates_token_count: TokenCount | None = None
    thoughts_token_count: TokenCount | None = None
    cached_content_token_count: TokenCount | None = None
    tool_use_prompt_token_count: TokenCount | None = None
    total_token_count: TokenCount | None = None

    def tokens(self) -> TokenUsage:
        """In OpenAI's counting: prompt includes cached and tool-use prompt tokens,
        completion includes thinking."""
        prompt = (self.prompt_token_count or 0) + (self.tool_use_prompt_token_count or 0)
        completion = (self.candidates_token_count or 0) + (self.thoughts_token_count or 0)
        return TokenUsage(prompt, completion, prompt + completion, self.cached_content_token_count or 0)


class ErrorDetail(msgspec.Struct):
    """`{"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED", "details": [...]}`;
    `details` holds `google.rpc.ErrorInfo` objects whose `reason` is the precise cause
    (`API_KEY_INVALID`)."""

    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: list[dict[str, Any]] | None = None

    @property
    def reason(self) -> str:
        for detail in self.details or []:
            reason = detail.get("reason")
            if isinstance(reason, str) and reason:
                return reason
        return ""


class ErrorBody(msgspec.Struct):
    """An error answer's body, and an error sent in place of a stream chunk."""

    error: ErrorDetail | None = None


class GenerateContentResponse(msgspec.Struct, rename="camel"):
    """A whole answer, and each chunk of a stream. An `error` key instead means the
    stream is reporting an error."""

    candidates: list[Candidate] | None = None
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    error: ErrorDetail | None = None


RESPONSE = msgspec.json.Decoder(GenerateContentResponse)
ERROR = msgspec.json.Decoder(ErrorBody)
