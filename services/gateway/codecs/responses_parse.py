"""OpenAI Responses request → the internal OpenAI chat completions body (SPEC.md §10).

The Responses API is served through the same internal request as chat completions,
so any model of any provider answers it; nothing here knows a provider.

Translated: `input` (a string, or items: messages of role user / system / developer
/ assistant whose content is a string or `input_text` / `input_image` / `output_text`
/ `refusal` parts; `function_call` items, which join the assistant message before
them as `tool_calls`; `function_call_output` items, which become tool messages),
`instructions` (a system message first), `tools` of type `function`, `tool_choice`
(auto / none / required / a named function), `max_output_tokens` → max_tokens,
`temperature`, `top_p`, `parallel_tool_calls`, `user`, `reasoning.effort` →
reasoning_effort, `text.format` (`json_schema`, `json_object`; `text` is the
default) → response_format, `stream`, `stepblend_max_cost`, `stepblend_strategy`.

Dropped, as StepBlend keeps no state: `reasoning` items handed back from an earlier
answer (other models neither take them back nor need them), `store` (answered
false), `include`, `truncation` and other fields that do not change what is asked.

Refused with 400 `unsupported_parameter`, naming the parameter: what needs state or
OpenAI's own hosted tools — `previous_response_id`, `conversation`, `prompt`,
`background`, `item_reference` items, built-in tools (web search, file search,
computer use, code interpreter, ...) and their call items, images or files given by
`file_id`, and `input_file` parts. An item or part of an unknown type is a 400
naming where it is.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.gateway.codecs.base import Parsed
from services.gateway.codecs.openai_chat import load_object
from services.gateway.errors import ApiError, invalid
from services.gateway.schemas import MAX_DEPTH, ChatRequest, nested_deeper_than

__all__ = ["UNSUPPORTED", "parse"]

#: The error code of everything this stateless, function-tools-only door refuses.
UNSUPPORTED = "unsupported_parameter"
_STATEFUL = ("previous_response_id", "conversation", "prompt")
_ROLES = frozenset({"user", "system", "developer", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text"})
# What a response echoes of its request (responses_render.response_object).
_ECHOED = ("instructions", "metadata", "max_output_tokens", "temperature", "top_p", "user")
# Fields passed as they are to the internal chat body.
_PASSED = ("temperature", "top_p", "parallel_tool_calls", "user", "stream", "stepblend_max_cost", "stepblend_strategy")


def _unsupported(message: str, param: str) -> ApiError:
    return invalid(message, param, UNSUPPORTED)


def _text_of(content: Any, param: str) -> str:
    """Text parts only (a tool's output), joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{param}: Input should be a valid string or list of input_text parts", param)
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise invalid(f"{param}.{i}: only input_text parts are supported here, not {kind!r}", f"{param}.{i}")
        texts.append(part["text"])
    return "".join(texts)


def _image(part: dict[str, Any], param: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id"):
            raise _unsupported(
                f"{param}.file_id: StepBlend keeps no files; send the image as image_url (a URL or a data: URL)",
                f"{param}.file_id",
            )
        raise invalid(f"{param}.image_url: Field required", f"{param}.image_url")
    image: dict[str, Any] = {"url": url}
    if isinstance(part.get("detail"), str):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _part(part: Any, param: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image":
        return _image(part, param)
    if kind == "input_file":
        raise _unsupported(f"{param}: input_file parts are not supported; send text or input_image", param)
    raise invalid(f"{param}.type: unknown content part type {kind!r}", f"{param}.type")


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(f"{param}.role: Input should be 'user', 'system', 'developer' or 'assistant'", f"{param}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise invalid(f"{param}.content: Input should be a valid string or list", f"{param}.content")
    parts = [_part(part, f"{param}.content.{i}") for i, part in enumerate(content)]
    if role != "user" and all(p["type"] == "text" for p in parts):
        # System, developer and assistant turns as plain text: every provider takes that.
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _call(item: dict[str, Any], param: str) -> dict[str, Any]:
    for name in ("call_id", "name", "arguments"):
        if not isinstance(item.get(name), str):
            raise invalid(f"{param}.{name}: Field required (a string)", f"{param}.{name}")
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }


def _input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid("input: Input should be a valid string or list of items", "input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        param = f"input.{i}"
        if not isinstance(item, dict):
            raise invalid(f"{param}: Input should be an object", param)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            out.append(_message(item, param))
        elif kind == "function_call":
            call = _call(item, param)
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and not isinstance(last.get("content"), list):
                last.setdefault("tool_calls", []).append(call)  # one assistant turn, several calls
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise invalid(f"{param}.call_id: Field required (a string)", f"{param}.call_id")
            content = _text_of(item.get("output", ""), f"{param}.output")
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        elif kind == "reasoning":
            continue  # an earlier answer's reasoning: other models neither take it back nor need it
        elif kind == "item_reference":
            raise _unsupported(f"{param}: StepBlend keeps no responses to refer to; send the item itself", param)
        elif isinstance(kind, str) and kind.endswith(("_call", "_call_output")):
            raise _unsupported(f"{param}.type: {kind!r} items belong to built-in tools, which are not supported", param)
        else:
            raise invalid(f"{param}.type: unknown input item type {kind!r}", f"{param}.type")
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list", "tools")
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise _unsupported(
                f"tools.{i}.type: only function tools are supported, not the built-in tool {kind!r} "
                "(web search, file search, computer use and the other hosted tools are OpenAI's own)",
                f"tools.{i}.type",
            )
        if not isinstance(tool.get("name"), str):
            raise invalid(f"tools.{i}.name: Field required", f"tools.{i}.name")
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object"}}
        for name in ("description", "strict"):
            if tool.get(name) is not None:
                function[name] = tool[name]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return str(choice)
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind is None:
        raise invalid("tool_choice: Input should be 'auto', 'none', 'required' or a function", "tool_choice")
    raise _unsupported(f"tool_choice.type: {kind!r} is not supported; name a function tool", "tool_choice.type")


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise invalid("text.format: json_schema needs a name and a schema", "text.format")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise invalid(f"text.format.type: unknown format {kind!r}", "text.format.type")


def _refuse_state(raw: dict[str, Any]) -> None:
    for name in _STATEFUL:
        if raw.get(name):
            raise _unsupported(
                f"{name}: StepBlend's Responses API is stateless; send the whole conversation in `input`", name
            )
    if raw.get("background"):
        raise _unsupported("background: responses are answered while you wait, not in the background", "background")


def _body(raw: dict[str, Any]) -> dict[str, Any]:
    _refuse_state(raw)
    messages: list[dict[str, Any]] = []
    instructions = raw.get("instructions")
    if instructions:
        if not isinstance(instructions, str):
            raise invalid("instructions: Input should be a valid string", "instructions")
        messages.append({"role": "system", "content": instructions})
    if "input" not in raw:
        raise invalid("input: Field required", "input")
    messages.extend(_input(raw["input"]))
    body: dict[str, Any] = {"model": raw.get("model"), "messages": messages}
    for name in _PASSED:
        if raw.get(name) is not None:
            body[name] = raw[name]
    if raw.get("max_output_tokens") is not None:
        body["max_tokens"] = raw["max_output_tokens"]
    if raw.get("tools"):
        body["tools"] = _tools(raw["tools"])
    if raw.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(raw["tool_choice"])
    response_format = _response_format(raw.get("text"))
    if response_format is not None:
        body["response_format"] = response_format
    reasoning = raw.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        body["reasoning_effort"] = reasoning["effort"]
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    return body


def _echo(raw: dict[str, Any]) -> dict[str, Any]:
    """What the response repeats of the request (as OpenAI's does)."""
    echo = {name: raw.get(name) for name in _ECHOED}
    text = raw.get("text")
    echo["text"] = {"format": text["format"]} if isinstance(text, dict) and "format" in text else None
    tools = raw.get("tools")
    echo["tools"] = tools if isinstance(tools, list) else []
    echo["tool_choice"] = raw.get("tool_choice") or "auto"
    echo["parallel_tool_calls"] = raw.get("parallel_tool_calls") is not False
    return echo


def parse(raw: bytes) -> Parsed:
    decoded = load_object(raw)
    if nested_deeper_than(decoded):
        raise invalid(f"The request body is nested more than {MAX_DEPTH} levels deep.")
    body = _body(decoded)
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if where == "max_tokens":
            where = "max_output_tokens"
        raise invalid(f"Invalid value for '{where}': {first['msg']}.", where) from None
    upstream = {k: v for k, v in body.items() if not k.startswith("stepblend_")}
    return Parsed(request, upstream, extra={"echo": _echo(decoded)})
