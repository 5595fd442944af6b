"""OpenAI Chat Completions objects as the real API writes them, built from a request.

Pure functions: a request body in, `chat.completion` / `chat.completion.chunk` /
error objects out, shaped by the vendor's `Flavour` (OpenAI's by default). What
the answer says is decided in `answers`.
"""

from __future__ import annotations

import re
from types import EllipsisType
from typing import Any

import orjson

from stepblend.mockprovider.answers import Answer, Ask
from stepblend.mockprovider.flavours import FLAVOURS, Flavour

SYSTEM_FINGERPRINT = "fp_mock"
OPENAI = FLAVOURS["openai"]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def count_tokens(text: str) -> int:
    """The mock's tokenizer: words and punctuation marks."""
    return len(_TOKEN.findall(text))


def prompt_tokens(body: dict[str, Any]) -> int:
    """Words and punctuation marks of every message, plus OpenAI's 3 per message and 3 to prime."""
    messages = body.get("messages") or []
    count = 3
    for message in messages:
        if isinstance(message, dict):
            count += 3 + count_tokens(_text_of(message.get("content")))
    return count


def ask_of(body: dict[str, Any]) -> Ask:
    """What an OpenAI request asks for."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    tools: list[tuple[str, str]] = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            properties = (function.get("parameters") or {}).get("properties") or {}
            tools.append((str(function.get("name", "tool")), next(iter(properties), "location")))
    given = body.get("tool_choice")
    chosen: str | None = None
    if isinstance(given, dict):
        choice, chosen = "named", (given.get("function") or {}).get("name")
    else:
        choice = given if given in ("none", "required", "auto") else "auto"
    stop = body.get("stop")
    limit = next(
        (v for v in (body.get("max_completion_tokens"), body.get("max_tokens")) if isinstance(v, int) and v > 0), None
    )
    return Ask(
        last_text=_text_of(last_user.get("content")),
        tools=tuple(tools),
        choice=choice,
        chosen=chosen,
        max_tokens=limit,
        stop=(stop,) if isinstance(stop, str) else tuple(s for s in stop or () if isinstance(s, str)),
        after_tool=bool(messages) and messages[-1].get("role") == "tool",
        json_keys=_json_keys(body.get("response_format")),
    )


def _json_keys(response_format: Any) -> tuple[str, ...] | None:
    """The properties a JSON answer must have (none named for JSON mode); None: text."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return ()
    if kind != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    return tuple(schema.get("properties") or ())


def _finish(answer: Answer) -> str:
    return "stop" if answer.finish == "stop_sequence" else answer.finish


def usage(prompt: int, completion: int, cached: int = 0, flavour: Flavour = OPENAI) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    if flavour.cache_hit_fields:
        body["prompt_cache_hit_tokens"] = cached
        body["prompt_cache_miss_tokens"] = prompt - cached
    return body


def _tool_calls(answer: Answer) -> list[dict[str, Any]]:
    return [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in answer.tool_calls
    ]


def completion(
    completion_id: str,
    created: int,
    model: str,
    answer: Answer,
    prompt: int,
    *,
    cached: int = 0,
    flavour: Flavour = OPENAI,
) -> bytes:
    """A whole `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    if answer.tool_calls:
        message["tool_calls"] = _tool_calls(answer)
    else:
        message["content"] = answer.text
    if answer.reasoning:
        message["reasoning_content"] = "".join(answer.reasoning)
    obj: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(answer)}],
        "usage": usage(prompt, answer.completion_tokens, cached, flavour),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    obj.update(flavour.answer_fields)
    if flavour.x_groq:
        obj["x_groq"] = {"id": f"req_{completion_id[-20:]}"}
    return orjson.dumps(obj)


def chunks(
    completion_id: str,
    created: int,
    model: str,
    answer: Answer,
    prompt: int,
    include_usage: bool,
    *,
    cached: int = 0,
    flavour: Flavour = OPENAI,
) -> list[bytes]:
    """The `chat.completion.chunk` objects of a stream, in order, without `[DONE]`.

    Role first, then one delta per piece (reasoning, then text or each tool call's
    name and argument fragments under its index), then the finish chunk; with
    `include_usage` every chunk carries `"usage": null` and a last chunk with
    `choices: []` carries it. Vendors differ as `flavours` says.
    """
    the_usage = usage(prompt, answer.completion_tokens, cached, flavour)

    def chunk(choices: list[dict[str, Any]], usage_value: Any = None, **extra: Any) -> dict[str, Any]:
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
        obj.update(flavour.answer_fields)
        obj.update(extra)
        return obj

    def delta(value: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": value, "logprobs": None, "finish_reason": finish}]

    out: list[dict[str, Any]] = []
    silent = bool(answer.reasoning or answer.tool_calls)
    first: dict[str, Any] = {"role": "assistant", "content": None if silent else "", "refusal": None}
    if answer.reasoning:
        first["reasoning_content"] = ""
    out.append(chunk(delta(first)))
    out.extend(chunk(delta({"content": None, "reasoning_content": piece})) for piece in answer.reasoning)
    for index, call in enumerate(answer.tool_calls):
        header = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        out.append(chunk(delta({"tool_calls": [header]})))
        out.extend(
            chunk(delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})) for piece in call.pieces
        )
    if not answer.tool_calls:
        # DeepSeek's content deltas say reasoning_content: null once the thinking is over.
        after_thinking = {"reasoning_content": None} if answer.reasoning else {}
        out.extend(chunk(delta({"content": piece, **after_thinking})) for piece in answer.pieces)
    finish = chunk(delta({}, _finish(answer)))
    if flavour.usage_on_finish or (flavour.usage_on_finish_when_asked and include_usage):
        finish["usage"] = the_usage
    out.append(finish)
    if flavour.x_groq:
        request_id = f"req_{completion_id[-20:]}"
        out[0]["x_groq"] = {"id": request_id}
        finish["x_groq"] = {"id": request_id, "usage": {**the_usage, "queue_time": 0.01, "total_time": 0.05}}
    if include_usage and flavour.usage_on_finish_when_asked:
        # xAI's last chunk: no choices, and no usage either (it came on the finish chunk).
        trailing = chunk([])
        del trailing["usage"]
        out.append(trailing)
    elif include_usage and not flavour.usage_on_finish:
        out.append(chunk([], the_usage))
    return [orjson.dumps(obj) for obj in out]


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
    status: int, message: str | None = None, *, param: str | None = None, code: str | EllipsisType | None = ...
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


def stream_error(kind: str, message: str | None = None) -> bytes:
    """The error object some OpenAI-compatible servers put in a stream that fails."""
    return orjson.dumps({"error": {"message": message or "The server had an error.", "type": kind, "code": None}})
