"""OpenAI Chat Completions objects as the real API writes them, built from a request.

Pure functions: a request body in, `chat.completion` / `chat.completion.chunk` /
error objects out. The answer is deterministic so that tests can assert on it:
the text is "Hello! You said: <the last user text>", split into word pieces that
each count as one completion token; with tools (and `tool_choice` not "none") the
answer is a call to the chosen tool with `{"<first parameter>": "Paris"}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

import orjson

MAX_ECHO_CHARS = 200
SYSTEM_FINGERPRINT = "fp_mock"

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class Answer:
    """What the mock will say: text pieces, or one tool call's argument fragments."""

    pieces: tuple[str, ...]
    finish_reason: str
    tool_name: str | None = None
    tool_call_id: str | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    """Words and punctuation marks of every message, plus OpenAI's 3 per message and 3 to prime."""
    messages = body.get("messages") or []
    count = 3
    for message in messages:
        if isinstance(message, dict):
            count += 3 + len(_TOKEN.findall(_text_of(message.get("content"))))
    return count


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _chosen_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        for tool in tools:
            if tool["function"].get("name") == wanted:
                return tool
    return tools[0]


def _max_pieces(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def answer_for(body: dict[str, Any], call_id: str, content: str | None = None) -> Answer:
    """The deterministic answer to `body`, truncated to its max_tokens (finish "length")."""
    tool = _chosen_tool(body)
    tool_name: str | None = None
    if tool is not None:
        function = tool["function"]
        tool_name = str(function.get("name", "tool"))
        properties = (function.get("parameters") or {}).get("properties") or {}
        param = next(iter(properties), "location")
        pieces: tuple[str, ...] = ('{"', param, '": "', "Par", "is", '"}')
        finish = "tool_calls"
    else:
        text = content if content is not None else "Hello! You said: " + _last_user_text(body)[:MAX_ECHO_CHARS]
        pieces = tuple(_PIECE.findall(text)) or ("",)
        finish = "stop"
    limit = _max_pieces(body)
    if limit is not None and limit < len(pieces):
        pieces, finish = pieces[:limit], "length"
    return Answer(pieces, finish, tool_name, call_id if tool_name else None)


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(completion_id: str, created: int, model: str, answer: Answer, prompt: int) -> bytes:
    """A whole `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    if answer.tool_name is not None:
        message["tool_calls"] = [
            {
                "id": answer.tool_call_id,
                "type": "function",
                "function": {"name": answer.tool_name, "arguments": "".join(answer.pieces)},
            }
        ]
    else:
        message["content"] = "".join(answer.pieces)
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}],
            "usage": usage(prompt, answer.completion_tokens),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
    )


def chunks(
    completion_id: str, created: int, model: str, answer: Answer, prompt: int, include_usage: bool
) -> list[bytes]:
    """The `chat.completion.chunk` objects of a stream, in order, without `[DONE]`.

    Role first, then one delta per piece, then the finish chunk; with `include_usage`
    every chunk carries `"usage": null` and a last chunk with `choices: []` carries it.
    """

    def chunk(choices: list[dict[str, Any]], usage_value: Any = None) -> bytes:
        obj: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if include_usage:
            obj["usage"] = usage_value
        return orjson.dumps(obj)

    def delta(value: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": value, "logprobs": None, "finish_reason": finish}]

    out: list[bytes] = []
    if answer.tool_name is not None:
        first_call = {
            "index": 0,
            "id": answer.tool_call_id,
            "type": "function",
            "function": {"name": answer.tool_name, "arguments": ""},
        }
        out.append(chunk(delta({"role": "assistant", "content": None, "tool_calls": [first_call], "refusal": None})))
        out.extend(
            chunk(delta({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})) for piece in answer.pieces
        )
    else:
        out.append(chunk(delta({"role": "assistant", "content": "", "refusal": None})))
        out.extend(chunk(delta({"content": piece})) for piece in answer.pieces)
    out.append(chunk(delta({}, answer.finish_reason)))
    if include_usage:
        out.append(chunk([], usage(prompt, answer.completion_tokens)))
    return out


_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error(
    status: int, message: str | None = None, *, param: str | None = None, code: str | None | EllipsisType = ...
) -> bytes:
    """OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`; `code`
    defaults to what OpenAI sends for that status."""
    kind, default_code, default_message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}")
    )
    return orjson.dumps(
        {
            "error": {
                "message": message or default_message,
                "type": kind,
                "param": param,
                "code": default_code if isinstance(code, EllipsisType) else code,
            }
        }
    )
