"""What the Anthropic, Gemini and Bedrock translations of OpenAI `messages` share:
walking the messages with a name for each (for the 400 that names a bad one),
merging consecutive turns of one role, which those formats require to alternate,
and reading an image given as a base64 data URL (Gemini and Bedrock fetch none)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from services.providers.adapters.base import DATA_URL, RequestRefused

__all__ = ["data_url_image", "merge", "messages_of"]


def messages_of(messages: Any) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Each message as (its name, `messages[i]`; the message; its role); `RequestRefused`
    for no messages or one that is not an object."""
    if not isinstance(messages, list) or not messages:
        raise RequestRefused("'messages' must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestRefused(f"{where} must be an object", where)
        yield where, message, message.get("role")


def merge(turns: list[tuple[str, list[Any]]], key: str) -> list[dict[str, Any]]:
    """The turns as messages `{"role", key: [...]}`, consecutive ones of one role joined
    and empty ones dropped; `RequestRefused` when none is left."""
    merged: list[dict[str, Any]] = []
    for role, items in turns:
        if not items:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1][key].extend(items)
        else:
            merged.append({"role": role, key: list(items)})
    if not merged:
        raise RequestRefused("'messages' must include a user or assistant message with content", "messages")
    return merged


def data_url_image(image_url: Any, at: str, models: str) -> tuple[str, str]:
    """An `image_url` part's (media type, base64 data); `RequestRefused` naming `at`
    unless it is a base64 data URL (`models` says who takes only those)."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise RequestRefused(f"{at}.image_url.url must be a URL", at)
    match = DATA_URL.match(url)
    if match is None:
        raise RequestRefused(f"{at}: {models} take images as base64 data URLs (data:image/png;base64,...)", at)
    return match["type"].lower(), match["data"]
