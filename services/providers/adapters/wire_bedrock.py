"""AWS Bedrock's Converse API objects as StepBlend reads them: msgspec Structs named
after AWS's documented types (docs.aws.amazon.com/bedrock/latest/APIReference/
API_runtime_Converse.html, API_runtime_ConverseStream.html), each declaring only the
fields the adapter reads, in the API's camelCase on the wire.

`Converse` answers one `ConverseResponse`. `ConverseStream` answers an AWS event
stream whose events each carry one JSON payload, named by the event's `:event-type`
header: messageStart, contentBlockStart, contentBlockDelta, contentBlockStop,
messageStop, metadata. Unknown fields are skipped (the stream's events carry a `p`
padding field); a field StepBlend reads that has the wrong type is a provider not
speaking the format (`base.decode` makes it an `UpstreamFormatError`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.providers.adapters.base import TokenCount, TokenUsage

#: The forced tool a JSON answer is asked for with (bedrock.py): its input is the answer.
JSON_TOOL = "stepblend_json_response"

__all__ = [
    "BLOCK_DELTA",
    "BLOCK_START",
    "ERROR",
    "JSON_TOOL",
    "MESSAGE_STOP",
    "METADATA",
    "RESPONSE",
    "ContentBlock",
    "ConverseResponse",
    "TokenUsageCounts",
]


class ToolUse(msgspec.Struct, rename="camel"):
    """A call the model makes; `input` is a JSON object (a whole answer's)."""

    tool_use_id: str = ""
    name: str = ""
    input: Any = None


class ReasoningText(msgspec.Struct):
    text: str = ""


class ReasoningContent(msgspec.Struct, rename="camel"):
    reasoning_text: ReasoningText | None = None


class ContentBlock(msgspec.Struct, rename="camel"):
    """One block of a message: `text`, `toolUse`, `reasoningContent` (or a kind added
    since, which is skipped)."""

    text: str | None = None
    tool_use: ToolUse | None = None
    reasoning_content: ReasoningContent | None = None


class Message(msgspec.Struct):
    role: str = "assistant"
    content: list[ContentBlock] = []


class Output(msgspec.Struct):
    message: Message | None = None


class TokenUsageCounts(msgspec.Struct, rename="camel"):
    """`usage`: inputTokens leaves out the prompt tokens read from or written to a cache."""

    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_read_input_tokens: TokenCount = 0
    cache_write_input_tokens: TokenCount = 0

    def tokens(self) -> TokenUsage:
        """As OpenAI counts them: the prompt includes the cached tokens."""
        prompt = self.input_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens
        return TokenUsage(prompt, self.output_tokens, prompt + self.output_tokens, self.cache_read_input_tokens)


class ConverseResponse(msgspec.Struct, rename="camel"):
    output: Output | None = None
    stop_reason: str = ""
    usage: TokenUsageCounts | None = None


class ToolUseStart(msgspec.Struct, rename="camel"):
    tool_use_id: str = ""
    name: str = ""


class BlockStartOf(msgspec.Struct, rename="camel"):
    tool_use: ToolUseStart | None = None


class BlockStart(msgspec.Struct, rename="camel"):
    """contentBlockStart: only a tool use announces its block."""

    content_block_index: int = 0
    start: BlockStartOf | None = None


class ToolUseDelta(msgspec.Struct):
    """A piece of a tool use's input, as JSON text."""

    input: str = ""


class ReasoningDelta(msgspec.Struct):
    text: str | None = None


class DeltaOf(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: ToolUseDelta | None = None
    reasoning_content: ReasoningDelta | None = None


class BlockDelta(msgspec.Struct, rename="camel"):
    content_block_index: int = 0
    delta: DeltaOf | None = None


class MessageStop(msgspec.Struct, rename="camel"):
    stop_reason: str = ""


class Metadata(msgspec.Struct):
    usage: TokenUsageCounts | None = None


class ErrorBody(msgspec.Struct):
    """An error answer's body (and an exception event's payload): AWS's JSON protocol
    puts the message under `message` (some services `Message`) and may name the type
    in `__type` besides the `x-amzn-errortype` header."""

    message: str | None = None
    Message: str | None = None
    type: str | None = msgspec.field(default=None, name="__type")


RESPONSE = msgspec.json.Decoder(ConverseResponse)
BLOCK_START = msgspec.json.Decoder(BlockStart)
BLOCK_DELTA = msgspec.json.Decoder(BlockDelta)
MESSAGE_STOP = msgspec.json.Decoder(MessageStop)
METADATA = msgspec.json.Decoder(Metadata)
ERROR = msgspec.json.Decoder(ErrorBody)
