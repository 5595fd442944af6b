"""The pieces of an OpenAI Responses answer, shared by a whole answer and a stream.

The `response` object (`resp_<request id>`, `output` items, `usage` with
input/output tokens, what it echoes of the request, `store: false` — nothing is
kept — and StepBlend's root `stepblend` report), its output items (a `message` with
one `output_text` part, a `function_call` per tool call) and how a chat
`finish_reason` maps to the response's status. Shapes are the openai SDK's types
(`openai.types.responses`), which parse them.
"""

from __future__ import annotations

from typing import Any

from services.gateway.codecs.base import Answer, Parsed, TokenCounts

__all__ = [
    "call_item",
    "call_item_id",
    "incomplete_reason",
    "message_id",
    "message_item",
    "output_text",
    "response_id",
    "response_object",
    "text_part",
    "usage",
]

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(answer: Answer) -> str:
    return "resp_" + answer.request_id


def message_id(answer: Answer, position: int = 0) -> str:
    """A message item's id: the first output item's is the request's; a later one
    (text after tool calls) its position's."""
    return "msg_" + answer.request_id + (f"_{position}" if position else "")


def call_item_id(answer: Answer, position: int) -> str:
    """The output item's own id (the model's `call_id` is another)."""
    return f"fc_{answer.request_id}_{position}"


def incomplete_reason(finish_reason: str | None) -> str | None:
    """Why a response ended before it was done, or None when it is complete."""
    return _INCOMPLETE.get(finish_reason or "")


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(answer: Answer, text: str, status: str, position: int = 0) -> dict[str, Any]:
    content = [text_part(text)] if status != "in_progress" else []
    return {
        "id": message_id(answer, position),
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def call_item(answer: Answer, position: int, call: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": call_item_id(answer, position),
        "type": "function_call",
        "status": status,
        "call_id": call,
        "name": name,
        "arguments": arguments,
    }


def usage(tokens: TokenCounts | None, reported: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Responses usage object: StepBlend's count of the provider's usage, else
    what the provider's answer said, else None."""
    if tokens is not None:
        prompt, completion, cached = tokens.prompt_tokens, tokens.completion_tokens, tokens.cached_prompt_tokens
        total = tokens.total_tokens or prompt + completion
    elif reported:
        prompt = int(reported.get("prompt_tokens") or 0)
        completion = int(reported.get("completion_tokens") or 0)
        cached = int((reported.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        total = int(reported.get("total_tokens") or prompt + completion)
    else:
        return None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": total,
    }


def output_text(output: list[dict[str, Any]]) -> str:
    """All `output_text` of the output, joined (as the SDKs' `response.output_text`)."""
    return "".join(
        part["text"]
        for item in output
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def response_object(
    answer: Answer,
    parsed: Parsed,
    status: str,
    output: list[dict[str, Any]],
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `response`: in progress (no usage, no report yet), or ended with its
    output, usage and the `stepblend` report."""
    echo: dict[str, Any] = parsed.extra.get("echo", {})
    reason = incomplete_reason(finish_reason)
    body: dict[str, Any] = {
        "id": response_id(answer),
        "object": "response",
        "created_at": answer.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": reason} if reason and status == "incomplete" else None,
        "instructions": echo.get("instructions"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "metadata": echo.get("metadata") or {},
        "model": answer.routed_model,
        "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "store": False,
        "temperature": echo.get("temperature"),
        "text": echo.get("text") or {"format": {"type": "text"}},
        "tool_choice": echo.get("tool_choice", "auto"),
        "tools": echo.get("tools", []),
        "top_p": echo.get("top_p"),
        "truncation": "disabled",
        "usage": usage,
        "user": echo.get("user"),
    }
    if status in ("completed", "incomplete"):
        body["output_text"] = output_text(output)
        body["stepblend"] = answer.stepblend()
    return body
