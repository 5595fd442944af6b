"""OpenAI `messages` → Anthropic's `system` and `messages` (the Messages API).

- system and developer messages, wherever they stand, become the top-level
  `system` (Anthropic has no system role inside `messages`), in order;
- user content: strings and text parts become `text` blocks; `image_url` parts
  become `image` blocks — a data URL as a `base64` source, an http(s) URL as a
  `url` source; other part types are refused (a clear 400, not a provider error);
- assistant `tool_calls` become `tool_use` blocks (arguments parsed to `input`);
- tool messages become `tool_result` blocks in a user turn;
- empty text is left out (Anthropic refuses empty text blocks), turns left empty
  are dropped, and consecutive turns of one role are merged into one, with a user
  turn's `tool_result` blocks first, as Anthropic requires.

`cache_control` on a text part passes through, so clients that mark prompt-cache
breakpoints the Anthropic way keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.providers.adapters.base import DATA_URL, RequestRefused
from services.providers.adapters.turns import merge, messages_of

Block = dict[str, Any]

# The media types Anthropic accepts for images (its vision docs).
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


@dataclass(frozen=True)
class Conversation:
    """`system` blocks (possibly none) and the alternating turns."""

    system: list[Block]
    turns: list[dict[str, Any]]


def convert(messages: Any) -> Conversation:
    """The Anthropic form of OpenAI `messages`; `RequestRefused` naming the bad part."""
    system: list[Block] = []
    turns: list[tuple[str, list[Block]]] = []
    for where, message, role in messages_of(messages):
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), where))
        elif role == "user":
            turns.append(("user", _user_blocks(message.get("content"), where)))
        elif role == "assistant":
            turns.append(("assistant", _assistant_blocks(message, where)))
        elif role == "tool":
            turns.append(("user", [_tool_result(message, where)]))
        else:
            raise RequestRefused(f"{where}: role {role!r} is not supported with Anthropic models", f"{where}.role")
    merged = merge(turns, "content")
    for turn in merged:
        if turn["role"] == "user":
            # Anthropic: in a user turn, tool_result blocks come before any other.
            turn["content"].sort(key=lambda block: block.get("type") != "tool_result")
    return Conversation(system, merged)


def _text_blocks(content: Any, where: str) -> list[Block]:
    """Text-only content (system, developer): a string or text parts."""
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return _parts(content, where, images=False)


def _user_blocks(content: Any, where: str) -> list[Block]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return _parts(content, where, images=True)


def _parts(content: Any, where: str, *, images: bool) -> list[Block]:
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
            if text:
                block: Block = {"type": "text", "text": text}
                if isinstance(part.get("cache_control"), dict):
                    block["cache_control"] = part["cache_control"]
                blocks.append(block)
        elif kind == "image_url" and images:
            blocks.append(_image(part.get("image_url"), at))
        else:
            raise RequestRefused(f"{at}: content part type {kind!r} is not supported here with Anthropic models", at)
    return blocks


def _image(image_url: Any, at: str) -> Block:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise RequestRefused(f"{at}.image_url.url must be a URL", at)
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    match = DATA_URL.match(url)
    if match is None:
        raise RequestRefused(f"{at}: an image must be an http(s) URL or a base64 data URL", at)
    media_type = match["type"].lower().replace("image/jpg", "image/jpeg")
    if media_type not in _IMAGE_TYPES:
        raise RequestRefused(
            f"{at}: image type {media_type} is not supported by Anthropic models (jpeg, png, gif, webp are)", at
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": match["data"]}}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[Block]:
    content = message.get("content")
    blocks = _text_blocks(content, where) if content is not None else []
    calls = message.get("tool_calls")
    if message.get("function_call") is not None:
        raise RequestRefused(f"{where}.function_call is deprecated: send tool_calls", f"{where}.function_call")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise RequestRefused(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    for k, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{k}]"))
    return blocks


def _tool_use(call: Any, at: str) -> Block:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict) or not isinstance(call.get("id"), str):
        raise RequestRefused(f"{at} must have an id and a function", at)
    name, arguments = function.get("name"), function.get("arguments") or "{}"
    if not isinstance(name, str) or not name:
        raise RequestRefused(f"{at}.function.name must be a string", f"{at}.function.name")
    try:
        tool_input = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise RequestRefused(f"{at}.function.arguments is not valid JSON", f"{at}.function.arguments") from None
    if not isinstance(tool_input, dict):
        raise RequestRefused(f"{at}.function.arguments must be a JSON object", f"{at}.function.arguments")
    return {"type": "tool_use", "id": call["id"], "name": name, "input": tool_input}


def _tool_result(message: dict[str, Any], where: str) -> Block:
    tool_use_id = message.get("tool_call_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise RequestRefused(f"{where}.tool_call_id is required for a tool message", f"{where}.tool_call_id")
    block: Block = {"type": "tool_result", "tool_use_id": tool_use_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        parts = _parts(content, where, images=True)
        if parts:
            block["content"] = parts
    return block
