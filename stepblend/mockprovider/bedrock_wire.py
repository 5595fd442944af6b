"""AWS Bedrock's Converse API objects as the real service writes them, built from a
request: `POST [/bedrock]/model/{modelId}/converse` and `/converse-stream`, as
docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html and
API_runtime_ConverseStream.html document them.

A whole answer:

    {"output": {"message": {"role": "assistant", "content": [{"text": "Hello! …"},
                {"toolUse": {"toolUseId": "tooluse_…", "name": "…", "input": {…}}}]}},
     "stopReason": "end_turn", "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
     "metrics": {"latencyMs": 42}}

A stream is AWS event-stream messages (eventstream.py), one JSON event each:
messageStart, contentBlockDelta per text piece, contentBlockStop, per tool use a
contentBlockStart (its id and name), contentBlockDelta input pieces, contentBlockStop;
messageStop {stopReason}; metadata {usage, metrics}. Each payload carries a `p`
padding field, as Bedrock's do. An error mid-stream is an exception message.

Errors: a JSON `{"message": ...}` body, the type in `x-amzn-errortype`. A request
that breaks Converse's rules is a 400 ValidationException: an unknown field, a
conversation not starting with a user turn or whose roles do not alternate, an empty
content or blank text, toolUse/toolResult blocks without a toolConfig, an unknown
inferenceConfig field.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson

from stepblend.mockprovider.answers import CITIES, Answer, Ask, ToolCall, answer
from stepblend.mockprovider.asgi import Scope
from stepblend.mockprovider.eventstream import event, exception
from stepblend.mockprovider.sigv4 import check
from stepblend.mockprovider.wire import count_tokens

EVENT_STREAM = b"application/vnd.amazon.eventstream"
#: An error answer: status, body, the headers besides content-type.
ErrorAnswer = tuple[int, bytes, list[tuple[bytes, bytes]]]

ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_MESSAGES = {
    400: "Malformed input request, please reformat your input and try again.",
    403: "You don't have access to the model with the specified model ID.",
    404: "The provided model identifier is invalid.",
    429: "Too many requests, please wait before trying again.",
    500: "The system encountered an unexpected error during processing. Try your request again.",
    503: "Bedrock is unable to process your request.",
}
_FIELDS = frozenset(
    {
        "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
        "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig",
    }
)  # fmt: skip
_INFERENCE_FIELDS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
_BLOCK_FIELDS = frozenset({"text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "reasoningContent", "cachePoint"})  # fmt: skip
_STOP = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "tool_calls": "tool_use"}
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
PATH = re.compile(r"^(?:/bedrock)?/model/(?P<model>[^/]+)/(?P<operation>converse|converse-stream)$")


def error_answer(status: int, message: str | None = None, kind: str | None = None) -> ErrorAnswer:
    """How Bedrock answers `status`: `{"message"}`, the type in `x-amzn-errortype`."""
    kind = kind or ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")
    body = orjson.dumps({"message": message or _MESSAGES.get(status, f"HTTP {status}")})
    error_type = f"{kind}:http://internal.amazon.com/coral/com.amazon.coral.service/"
    return status, body, [(b"x-amzn-errortype", error_type.encode()), (b"x-amzn-requestid", b"mock-request")]


def refusal(
    scope: Scope, headers: dict[str, str], raw: bytes, body: Any, reject_keys: frozenset[str]
) -> ErrorAnswer | None:
    """Bedrock's answer to a request its signature gate (403) or Converse's rules (400)
    refuse, else None."""
    raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    refused = check("POST", raw_path, headers, raw, reject_keys)
    if refused is not None:
        return error_answer(403, refused[1], refused[0])
    problem = invalid(body)
    return None if problem is None else error_answer(400, problem)


def invalid(body: Any) -> str | None:
    """The ValidationException message for a request Converse would refuse, or None."""
    if not isinstance(body, dict):
        return "Malformed input request, please reformat your input and try again."
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        return f"Malformed input request: extraneous key [{unknown[0]}] is not permitted, please reformat your input and try again."
    config = body.get("inferenceConfig") or {}
    if set(config) - _INFERENCE_FIELDS:
        return (
            f"Malformed input request: extraneous key [{sorted(set(config) - _INFERENCE_FIELDS)[0]}] is not permitted"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "The model returned the following errors: messages: at least one message is required"
    if messages[0].get("role") != "user":
        return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
    tools_used = False
    for i, message in enumerate(messages):
        if i and message.get("role") == messages[i - 1].get("role"):
            return "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
        for block in content:
            if not isinstance(block, dict) or len(block) != 1 or not set(block) <= _BLOCK_FIELDS:
                return f"Malformed input request: messages.{i}.content: each block has exactly one of {sorted(_BLOCK_FIELDS)}"
            if "text" in block and not str(block["text"]).strip():
                return f"The text field in the ContentBlock object at messages.{i}.content is blank. Add text to the text field, and try again."
            tools_used = tools_used or "toolUse" in block or "toolResult" in block
    if tools_used and not body.get("toolConfig"):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


def _texts(content: Any) -> list[str]:
    texts: list[str] = []
    for block in content or []:
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolResult"), dict):
            for part in block["toolResult"].get("content") or []:
                texts.append(part["text"] if "text" in part else orjson.dumps(part.get("json")).decode())
    return texts


def prompt_tokens(body: dict[str, Any]) -> int:
    """The mock's count: words and punctuation of the system blocks and every message, plus 3 each."""
    count = sum(count_tokens(t) for t in _texts(body.get("system")))
    for message in body["messages"]:
        count += 3 + sum(count_tokens(t) for t in _texts(message.get("content")))
    return count + 3


def ask_of(body: dict[str, Any]) -> Ask:
    """What a Converse request asks for."""
    messages: list[dict[str, Any]] = body["messages"]
    last_user: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    tool_config = body.get("toolConfig") or {}
    tools = tuple(
        (
            str(spec["name"]),
            next(iter(((spec.get("inputSchema") or {}).get("json") or {}).get("properties") or {}), "location"),
        )
        for tool in tool_config.get("tools") or []
        if isinstance(spec := tool.get("toolSpec"), dict)
    )
    choice = tool_config.get("toolChoice") or {"auto": {}}
    named = (choice.get("tool") or {}).get("name")
    config = body.get("inferenceConfig") or {}
    return Ask(
        last_text=" ".join(t for b in last_user.get("content") or [] if isinstance(t := b.get("text"), str)),
        tools=tools,
        choice="named" if named else "required" if "any" in choice else "auto",
        chosen=named,
        max_tokens=config.get("maxTokens"),
        stop=tuple(config.get("stopSequences") or ()),
        after_tool=any("toolResult" in b for b in messages[-1].get("content") or []),
    )


def answer_to(body: dict[str, Any], call_id: str, content: str | None = None, tool_calls: int = 1) -> Answer:
    """The mock's answer to a Converse request: `answers.answer`, except that a tool the
    request forces (toolChoice {tool}) gets every property of its input schema, a city
    each, as a model fills a schema it is made to answer with."""
    said = answer(ask_of(body), call_id, content=content, tool_calls=tool_calls)
    tool_config = body.get("toolConfig") or {}
    forced = ((tool_config.get("toolChoice") or {}).get("tool") or {}).get("name")
    specs = [t["toolSpec"] for t in tool_config.get("tools") or [] if isinstance(t.get("toolSpec"), dict)]
    schema = next(((s.get("inputSchema") or {}).get("json") or {} for s in specs if s.get("name") == forced), {})
    keys = list(schema.get("properties") or {})
    if not said.tool_calls or len(keys) < 2:
        return said
    arguments = orjson.dumps({key: CITIES[i % len(CITIES)] for i, key in enumerate(keys)}).decode()
    pieces = (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :])
    call = ToolCall(said.tool_calls[0].id, said.tool_calls[0].name, pieces)
    return dataclasses.replace(said, tool_calls=(call,))


def _usage(prompt: int, cached: int, output: int) -> dict[str, Any]:
    usage: dict[str, Any] = {"inputTokens": prompt - cached, "outputTokens": output, "totalTokens": prompt + output}
    if cached:
        usage["cacheReadInputTokens"] = cached
        usage["cacheWriteInputTokens"] = 0
    return usage


def response(answer: Answer, prompt: int, cached: int = 0) -> bytes:
    """A whole `ConverseResponse` (a non-streaming answer)."""
    content: list[dict[str, Any]] = [{"text": answer.text}] if answer.text or not answer.tool_calls else []
    content += [
        {"toolUse": {"toolUseId": call.id, "name": call.name, "input": orjson.loads(call.arguments)}}
        for call in answer.tool_calls
    ]
    return orjson.dumps(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": _STOP[answer.finish],
            "usage": _usage(prompt, cached, answer.completion_tokens),
            "metrics": {"latencyMs": 42},
        }
    )


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return event(kind, orjson.dumps({**payload, "p": _PADDING[: 1 + len(kind)]}))


def frames(answer: Answer, prompt: int, cached: int = 0) -> list[bytes]:
    """The event-stream messages of a ConverseStream answer, in order."""
    out = [_event("messageStart", {"role": "assistant"})]
    index = 0
    if answer.text or not answer.tool_calls:
        out += [_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in answer.pieces]
        out.append(_event("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for i, call in enumerate(answer.tool_calls, start=index):
        start = {"toolUse": {"toolUseId": call.id, "name": call.name}}
        out.append(_event("contentBlockStart", {"contentBlockIndex": i, "start": start}))
        out += [
            _event("contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": piece}}})
            for piece in call.pieces
        ]
        out.append(_event("contentBlockStop", {"contentBlockIndex": i}))
    out.append(_event("messageStop", {"stopReason": _STOP[answer.finish]}))
    usage = _usage(prompt, cached, answer.completion_tokens)
    out.append(_event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}))
    return out


def error_frame(kind: str, message: str | None = None) -> bytes:
    """An exception message sent in place of a stream event (`kind` is its type)."""
    return exception(kind, orjson.dumps({"message": message or "The model is overloaded; try again later."}))
