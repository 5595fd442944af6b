"""OpenAI `messages` → Bedrock Converse's `system` and `messages`
(docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Message.html).

- system and developer messages, wherever they stand, become `system` text blocks,
  in order (Converse has no system role inside `messages`);
- user content: strings and text parts become `text` blocks; an `image_url` part
  whose URL is a base64 data URL becomes `{"image": {"format", "source": {"bytes"}}}`
  (the JSON protocol carries bytes as base64, so the data passes as it came). An
  http(s) image URL is refused (Converse takes bytes or its own S3 locations, and
  the adapter does no network), as are other part types;
- an assistant turn: its text, then one `toolUse` {toolUseId, name, input} per tool
  call (arguments parsed to an object); a `reasoning_content` it carries back is
  dropped (Bedrock wants its signed reasoning blocks, which OpenAI's shape has not);
- a tool message becomes a `toolResult` {toolUseId, content} in a user turn: the
  content's JSON object as a `json` block when it is one, else a `text` block;
- empty text is left out (Bedrock refuses blank text), turns left empty are dropped,
  and consecutive turns of one role are merged, so the roles alternate as Converse
  requires and parallel calls' results travel together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.providers.adapters.base import RequestRefused
from services.providers.adapters.turns import data_url_image, merge, messages_of

Block = dict[str, Any]

# The image formats Converse takes (API_runtime_ImageBlock.html).
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_WHERE = "Bedrock models"


@dataclass(frozen=True)
class Conversation:
    """`system` blocks (possibly none) and the alternating `messages`."""

    system: list[Block]
    messages: list[dict[str, Any]]

    @property
    def uses_tools(self) -> bool:
        """Whether a turn carries a toolUse or toolResult (Bedrock then wants toolConfig)."""
        return any("toolUse" in b or "toolResult" in b for m in self.messages for b in m["content"])


def convert(messages: Any) -> Conversation:
    """The Converse form of OpenAI `messages`; `RequestRefused` naming the bad part."""
    system: list[Block] = []
    turns: list[tuple[str, list[Block]]] = []
    for where, message, role in messages_of(messages):
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content"), where, images=False))
        elif role == "user":
            turns.append(("user", _blocks(message.get("content"), where, images=True)))
        elif role == "assistant":
            turns.append(("assistant", _assistant(message, where)))
        elif role == "tool":
            turns.append(("user", [_tool_result(message, where)]))
        else:
            raise RequestRefused(f"{where}: role {role!r} is not supported with {_WHERE}", f"{where}.role")
    return Conversation(system, merge(turns, "content"))


def _blocks(content: Any, where: str, *, images: bool) -> list[Block]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content and content.strip() else []
    if not isinstance(content, list):
        raise RequestRefused(f"{where}.content must be a string or an array of parts", f"{where}.content")
    blocks: list[Block] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise RequestRefused(f"{at} must be an object", at)
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise RequestRefused(f"{at}.{kind} must be a string", at)
            if text.strip():
                blocks.append({"text": text})
        elif kind == "image_url" and images:
            blocks.append(_image(part.get("image_url"), at))
        else:
            raise RequestRefused(f"{at}: content part type {kind!r} is not supported here with {_WHERE}", at)
    return blocks


def _image(image_url: Any, at: str) -> Block:
    media_type, data = data_url_image(image_url, at, _WHERE)
    image_format = _IMAGE_FORMATS.get(media_type)
    if image_format is None:
        raise RequestRefused(
            f"{at}: image type {media_type} is not supported by {_WHERE} (png, jpeg, gif, webp are)", at
        )
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant(message: dict[str, Any], where: str) -> list[Block]:
    if message.get("function_call") is not None:
        raise RequestRefused(f"{where}.function_call is deprecated: send tool_calls", f"{where}.function_call")
    blocks = _blocks(message.get("content"), where, images=False)
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise RequestRefused(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    return blocks + [_tool_use(call, f"{where}.tool_calls[{k}]") for k, call in enumerate(calls)]


def _tool_use(call: Any, at: str) -> Block:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise RequestRefused(f"{at} must have a function", at)
    call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments") or "{}"
    if not isinstance(call_id, str) or not call_id:
        raise RequestRefused(f"{at}.id is required", f"{at}.id")
    if not isinstance(name, str) or not name:
        raise RequestRefused(f"{at}.function.name must be a string", f"{at}.function.name")
    try:
        args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise RequestRefused(f"{at}.function.arguments is not valid JSON", f"{at}.function.arguments") from None
    if not isinstance(args, dict):
        raise RequestRefused(f"{at}.function.arguments must be a JSON object", f"{at}.function.arguments")
    return {"toolUse": {"toolUseId": call_id, "name": name, "input": args}}


def _tool_result(message: dict[str, Any], where: str) -> Block:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise RequestRefused(f"{where}.tool_call_id is required for a tool message", f"{where}.tool_call_id")
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(b["text"] for b in _blocks(content, where, images=False))
    try:
        parsed = orjson.loads(text) if text[:1] == "{" else None
    except orjson.JSONDecodeError:
        parsed = None
    result: Block = {"json": parsed} if isinstance(parsed, dict) else {"text": text or " "}
    return {"toolResult": {"toolUseId": call_id, "content": [result]}}
