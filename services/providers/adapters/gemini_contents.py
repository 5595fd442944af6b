"""OpenAI `messages` → Gemini's `systemInstruction` and `contents`.

- system and developer messages, wherever they stand, become `systemInstruction`
  text parts, in order (Gemini has no system role inside `contents`);
- user content: strings and text parts become `text` parts; an `image_url` part
  whose URL is a base64 data URL becomes `inlineData` {mimeType, data}. An http(s)
  image URL is refused (Gemini's `fileData` takes its own Files API URIs, not the
  web, and the adapter does no network), as are other part types (audio is billed
  above the text price the catalog holds);
- an assistant turn (role `model`): its text, then one `functionCall` {name, args}
  per tool call (arguments parsed to an object). A call that came from Gemini with
  a thought signature carries it back (`extra_content.google.thought_signature` on
  the tool call, the name Google's own OpenAI endpoint uses), as Gemini asks;
- a tool message becomes a `functionResponse` {name, response} in a user turn; its
  name is the one the assistant's call with that `tool_call_id` used (OpenAI's tool
  message names no function). The response is the content's JSON object when the
  content is one, else `{"result": <the text>}`;
- empty text is left out, turns left empty are dropped, and consecutive turns of one
  role are merged into one, so parallel calls' responses travel together.

Ids: Gemini matches responses to calls by name and order, so no ids are sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.providers.adapters.base import RequestRefused
from services.providers.adapters.turns import data_url_image, merge, messages_of

Part = dict[str, Any]

# The image types Gemini takes inline (its image-understanding docs).
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})


@dataclass(frozen=True)
class Conversation:
    """`systemInstruction` parts (possibly none) and the alternating `contents`."""

    system: list[Part]
    contents: list[dict[str, Any]]


def convert(messages: Any) -> Conversation:
    """The Gemini form of OpenAI `messages`; `RequestRefused` naming the bad part."""
    system: list[Part] = []
    turns: list[tuple[str, list[Part]]] = []
    # tool_call_id → the function name, from the assistant turns seen so far
    called: dict[str, str] = {}
    for where, message, role in messages_of(messages):
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content"), where, images=False))
        elif role == "user":
            turns.append(("user", _parts(message.get("content"), where, images=True)))
        elif role == "assistant":
            turns.append(("model", _model_parts(message, where, called)))
        elif role == "tool":
            turns.append(("user", [_function_response(message, where, called)]))
        else:
            raise RequestRefused(f"{where}: role {role!r} is not supported with Gemini models", f"{where}.role")
    return Conversation(system, merge(turns, "parts"))


def _parts(content: Any, where: str, *, images: bool) -> list[Part]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise RequestRefused(f"{where}.content must be a string or an array of parts", f"{where}.content")
    parts: list[Part] = []
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
                parts.append({"text": text})
        elif kind == "image_url" and images:
            parts.append(_image(part.get("image_url"), at))
        else:
            raise RequestRefused(f"{at}: content part type {kind!r} is not supported here with Gemini models", at)
    return parts


def _image(image_url: Any, at: str) -> Part:
    media_type, data = data_url_image(image_url, at, "Gemini models")
    mime_type = media_type.replace("image/jpg", "image/jpeg")
    if mime_type not in _IMAGE_TYPES:
        raise RequestRefused(
            f"{at}: image type {mime_type} is not supported by Gemini models (png, jpeg, webp, heic, heif are)", at
        )
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def _model_parts(message: dict[str, Any], where: str, called: dict[str, str]) -> list[Part]:
    if message.get("function_call") is not None:
        raise RequestRefused(f"{where}.function_call is deprecated: send tool_calls", f"{where}.function_call")
    parts = _parts(message.get("content"), where, images=False)
    calls = message.get("tool_calls")
    if calls is None:
        return parts
    if not isinstance(calls, list):
        raise RequestRefused(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    for k, call in enumerate(calls):
        parts.append(_function_call(call, f"{where}.tool_calls[{k}]", called))
    return parts


def _function_call(call: Any, at: str, called: dict[str, str]) -> Part:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise RequestRefused(f"{at} must have a function", at)
    name, arguments = function.get("name"), function.get("arguments") or "{}"
    if not isinstance(name, str) or not name:
        raise RequestRefused(f"{at}.function.name must be a string", f"{at}.function.name")
    try:
        args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise RequestRefused(f"{at}.function.arguments is not valid JSON", f"{at}.function.arguments") from None
    if not isinstance(args, dict):
        raise RequestRefused(f"{at}.function.arguments must be a JSON object", f"{at}.function.arguments")
    if isinstance(call.get("id"), str):
        called[call["id"]] = name
    part: Part = {"functionCall": {"name": name, "args": args}}
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    if isinstance(signature, str) and signature:
        part["thoughtSignature"] = signature
    return part


def _function_response(message: dict[str, Any], where: str, called: dict[str, str]) -> Part:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise RequestRefused(f"{where}.tool_call_id is required for a tool message", f"{where}.tool_call_id")
    name = called.get(call_id)
    if name is None:
        raise RequestRefused(
            f"{where}.tool_call_id {call_id!r} answers no tool call of an earlier assistant message",
            f"{where}.tool_call_id",
        )
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(p["text"] for p in _parts(content, where, images=False))
    try:
        parsed = orjson.loads(text) if text[:1] == "{" else None
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}
