"""Google Gemini API objects as the real API writes them, built from a request.

Pure functions: headers and a `GenerateContentRequest` in; a validation error, a
`GenerateContentResponse`, the SSE frames of `streamGenerateContent?alt=sse`, or an
error body out — as ai.google.dev/api/generate-content documents them:

    data: {"candidates":[{"content":{"parts":[{"text":"Hello! "}],"role":"model"},"index":0}],
           "usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":1,"totalTokenCount":13},
           "modelVersion":"gemini-2.5-flash","responseId":"…"}
    …                            one chunk per text piece or function call (a call is whole)
    data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},
           "finishReason":"STOP","index":0}],"usageMetadata":{…final…},…}

There is no end event: the stream ends with the connection. Frames end with CRLF as
Google's do. Function calls come without ids (as the Gemini API sends them), the
first carrying a `thoughtSignature`. With `thinkingConfig.thinkingBudget` above 0 the
answer reports `thoughtsTokenCount` (and, with `includeThoughts`, thought parts).

Errors: `{"error": {"code", "message", "status", "details"}}`. As the real API does:
a missing key is a 403 PERMISSION_DENIED, an invalid one a **400** INVALID_ARGUMENT
with reason API_KEY_INVALID; an unknown field anywhere StepBlend writes is a 400
`Unknown name`; contents must be non-empty with roles user/model and non-empty parts;
a function's OBJECT parameters must have properties.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from stepblend.mockprovider.answers import REASONING, Answer, Ask
from stepblend.mockprovider.wire import count_tokens

STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "models/unknown is not found for API version v1beta.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
_REQUEST_FIELDS = frozenset(
    {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent"}
)
_CONFIG_FIELDS = frozenset(
    {
        "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
        "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
        "frequencyPenalty", "responseLogprobs", "logprobs", "thinkingConfig", "mediaResolution",
    }
)  # fmt: skip
_PART_FIELDS = frozenset(
    {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature"}
)
_FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
SIGNATURE = base64.b64encode(b"mock-thought-signature").decode()


def error(status: int, message: str | None = None, *, reason: str = "", kind: str | None = None) -> bytes:
    detail: dict[str, Any] = {
        "code": status,
        "message": message or _MESSAGES.get(status, f"HTTP {status}"),
        "status": kind or STATUSES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"),
    }
    if reason:
        detail["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    return orjson.dumps({"error": detail})


def error_frame(kind: str, message: str | None = None) -> bytes:
    """An error sent in place of a stream chunk (`kind` becomes its status)."""
    return b"data: " + error(503, message, kind=kind) + b"\r\n\r\n"


def refusal(headers: dict[str, str], body: Any, reject_keys: frozenset[str]) -> tuple[int, bytes] | None:
    """The status and error body Gemini would refuse this request with, or None."""
    refused = key_refusal(headers, reject_keys)
    if refused is not None:
        return refused
    if not isinstance(body, dict):
        return 400, error(400, "Invalid JSON payload received. Expected an object.")
    problem = _invalid_request(body)
    return None if problem is None else (400, error(400, problem))


def key_refusal(headers: dict[str, str], reject_keys: frozenset[str]) -> tuple[int, bytes] | None:
    """How Gemini refuses a request without a key, or with one it rejects; None otherwise."""
    key = headers.get("x-goog-api-key", "")
    if not key:
        message = (
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API."
        )
        return 403, error(403, message)
    if key in reject_keys:
        return 400, error(400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID")
    return None


def _unknown(obj: dict[str, Any], known: frozenset[str], where: str) -> str | None:
    for name in obj:
        if name not in known:
            return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
    return None


def _invalid_request(body: dict[str, Any]) -> str | None:
    problem = _unknown(body, _REQUEST_FIELDS, "")
    if problem is not None:
        return problem
    config = body.get("generationConfig")
    if config is not None:
        problem = _unknown(config, _CONFIG_FIELDS, "generation_config") if isinstance(config, dict) else None
        if problem is not None or not isinstance(config, dict):
            return problem or "generation_config must be an object"
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") not in ("user", "model"):
            return "Please use a valid role: user, model."
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
        for j, part in enumerate(parts):
            where = f"contents[{i}].parts[{j}]"
            if not isinstance(part, dict) or not part:
                return f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field\n"
            problem = _unknown(part, _PART_FIELDS, where)
            if problem is not None:
                return problem
            response = part.get("functionResponse")
            if response is not None and (not response.get("name") or not isinstance(response.get("response"), dict)):
                return f"* GenerateContentRequest.{where}.function_response.name: Name cannot be empty.\n"
    for i, tool in enumerate(body.get("tools") or []):
        for j, declaration in enumerate(tool.get("functionDeclarations") or []):
            parameters = declaration.get("parameters")
            if isinstance(parameters, dict) and parameters.get("type") == "OBJECT" and not parameters.get("properties"):
                return (
                    f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].parameters.properties:"
                    " should be non-empty for OBJECT type\n"
                )
    return None


def _texts(content: Any) -> list[str]:
    texts: list[str] = []
    for part in (content or {}).get("parts") or []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part, dict) and isinstance(part.get("functionResponse"), dict):
            texts.append(orjson.dumps(part["functionResponse"].get("response")).decode())
    return texts


def prompt_tokens(body: dict[str, Any]) -> int:
    """The mock's count: words and punctuation of the system instruction and every content, plus 3 each."""
    count = sum(count_tokens(t) for t in _texts(body.get("systemInstruction")))
    for content in body.get("contents") or []:
        count += 3 + sum(count_tokens(t) for t in _texts(content))
    return count + 3


def ask_of(body: dict[str, Any]) -> Ask:
    """What a Gemini request asks for."""
    contents: list[dict[str, Any]] = body.get("contents") or []
    last: dict[str, Any] = contents[-1] if contents else {}
    last_user: dict[str, Any] = next((c for c in reversed(contents) if c.get("role") == "user"), {})
    tools = tuple(
        (str(d["name"]), next(iter((d.get("parameters") or {}).get("properties") or {}), "location"))
        for tool in body.get("tools") or []
        for d in tool.get("functionDeclarations") or []
    )
    calling = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
    allowed = calling.get("allowedFunctionNames") or []
    choice = {"AUTO": "auto", "NONE": "none", "ANY": "named" if len(allowed) == 1 else "required"}
    config = body.get("generationConfig") or {}
    return Ask(
        last_text=" ".join(_texts(last_user)),
        tools=tools,
        choice=choice.get(str(calling.get("mode", "AUTO")), "auto"),
        chosen=allowed[0] if len(allowed) == 1 else None,
        max_tokens=config.get("maxOutputTokens"),
        stop=tuple(config.get("stopSequences") or ()),
        after_tool=any(isinstance(p, dict) and "functionResponse" in p for p in last.get("parts") or []),
        json_keys=tuple((config.get("responseSchema") or {}).get("properties") or ())
        if config.get("responseMimeType") == "application/json"
        else None,
    )


def thinking(body: dict[str, Any]) -> tuple[int, bool]:
    """The thinking tokens this request spends (the mock's reasoning), and whether
    it asked to see them (`includeThoughts`)."""
    config = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    budget = config.get("thinkingBudget", 0)
    spent = len(REASONING.split()) if isinstance(budget, int) and budget > 0 else 0
    return spent, bool(spent and config.get("includeThoughts"))


def _usage(prompt: int, cached: int, output: int, thoughts: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _call_part(i: int, name: str, arguments: str) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": name, "args": orjson.loads(arguments)}}
    if i == 0:
        part["thoughtSignature"] = SIGNATURE
    return part


def _response(
    response_id: str, model: str, parts: list[dict[str, Any]], usage: dict[str, Any], finish: str | None
) -> bytes:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return orjson.dumps(
        {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": response_id}
    )


def response(
    response_id: str, model: str, answer: Answer, prompt: int, cached: int = 0, thoughts: tuple[int, bool] = (0, False)
) -> bytes:
    """A whole `GenerateContentResponse` (a non-streaming answer)."""
    spent, shown = thoughts
    parts: list[dict[str, Any]] = [{"text": REASONING, "thought": True}] if shown else []
    if answer.text or not answer.tool_calls:
        parts.append({"text": answer.text})
    parts += [_call_part(i, call.name, call.arguments) for i, call in enumerate(answer.tool_calls)]
    usage = _usage(prompt, cached, answer.completion_tokens, spent)
    return _response(response_id, model, parts, usage, _FINISH[answer.finish])


def frames(
    response_id: str, model: str, answer: Answer, prompt: int, cached: int = 0, thoughts: tuple[int, bool] = (0, False)
) -> list[bytes]:
    """The SSE frames of a stream, in order: a chunk per text piece and per call, then
    the finish chunk; each carries the usage so far."""
    spent, shown = thoughts
    pieces: list[dict[str, Any]] = [{"text": REASONING, "thought": True}] if shown else []
    if answer.text or not answer.tool_calls:
        pieces += [{"text": piece} for piece in answer.pieces if piece]
    pieces += [_call_part(i, call.name, call.arguments) for i, call in enumerate(answer.tool_calls)]
    out: list[bytes] = []
    for n, part in enumerate(pieces, start=1):
        usage = _usage(prompt, cached, min(n, answer.completion_tokens), spent)
        out.append(b"data: " + _response(response_id, model, [part], usage, None) + b"\r\n\r\n")
    usage = _usage(prompt, cached, answer.completion_tokens, spent)
    last = _response(response_id, model, [{"text": ""}], usage, _FINISH[answer.finish])
    out.append(b"data: " + last + b"\r\n\r\n")
    return out
