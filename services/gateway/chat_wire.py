"""Translation between the gRPC Chat API's typed messages (chat.proto) and the
OpenAI JSON the request path speaks. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from stepblend.v1 import chat_pb2

_TOOL_CHOICES = ("auto", "none", "required")


def _message(m: chat_pb2.ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if m.parts:
        out["content"] = [
            {"type": "text", "text": p.text}
            if p.WhichOneof("part") == "text"
            else {"type": "image_url", "image_url": {"url": p.image_url}}
            for p in m.parts
        ]
    else:
        out["content"] = m.content if m.content or not m.tool_calls else None
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


def to_openai(request: chat_pb2.ChatRequest, stream: bool) -> dict[str, Any]:
    """The chat completions body a ChatRequest stands for."""
    body: dict[str, Any] = {"model": request.model, "messages": [_message(m) for m in request.messages]}
    if stream:
        body["stream"] = True
        if request.include_usage:
            body["stream_options"] = {"include_usage": True}
    for name in ("max_tokens", "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        if request.HasField(name):
            body[name] = getattr(request, name)
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "parameters": MessageToDict(t.parameters) if t.HasField("parameters") else {"type": "object"},
                },
            }
            for t in request.tools
        ]
    if request.tool_choice:
        body["tool_choice"] = (
            request.tool_choice
            if request.tool_choice in _TOOL_CHOICES
            else {"type": "function", "function": {"name": request.tool_choice}}
        )
    if request.response_format:
        body["response_format"] = {"type": request.response_format}
        if request.response_format == "json_schema":
            body["response_format"]["json_schema"] = MessageToDict(request.json_schema)
    if request.max_cost_usd:
        body["stepblend_max_cost"] = request.max_cost_usd
    if request.strategy:
        body["stepblend_strategy"] = request.strategy
    if request.user:
        body["user"] = request.user
    return body


def _usage(usage: dict[str, Any] | None) -> chat_pb2.ChatUsage | None:
    if not usage:
        return None
    return chat_pb2.ChatUsage(
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
        total_tokens=usage.get("total_tokens") or 0,
    )


def routing(info: dict[str, Any], request_id: str) -> chat_pb2.Routing:
    out = chat_pb2.Routing(
        routed_model=info["routed_model"],
        provider=info["provider"],
        strategy_used=info["strategy_used"],
        estimated_cost_usd=info["estimated_cost_usd"] or 0.0,
        request_id=request_id,
        attempts=[
            chat_pb2.RouteAttempt(
                provider=a["provider"],
                model=a["model"],
                outcome=a["outcome"],
                status=a.get("status") or 0,
                detail=a.get("detail") or "",
            )
            for a in info.get("attempts", ())
        ],
    )
    if info.get("actual_cost_usd") is not None:
        out.actual_cost_usd = info["actual_cost_usd"]
    return out


def completion(body: dict[str, Any], info: dict[str, Any], request_id: str) -> chat_pb2.ChatCompletion:
    choices = []
    for choice in body.get("choices") or ():
        message = choice.get("message") or {}
        choices.append(
            chat_pb2.Choice(
                index=choice.get("index") or 0,
                finish_reason=choice.get("finish_reason") or "",
                message=chat_pb2.ChatMessage(
                    role=message.get("role") or "assistant",
                    content=message.get("content") or "",
                    reasoning_content=message.get("reasoning_content") or "",
                    tool_calls=[
                        chat_pb2.ToolCall(
                            id=c.get("id") or "",
                            name=(c.get("function") or {}).get("name") or "",
                            arguments=(c.get("function") or {}).get("arguments") or "",
                        )
                        for c in message.get("tool_calls") or ()
                    ],
                ),
            )
        )
    out = chat_pb2.ChatCompletion(
        id=body.get("id") or "",
        created=body.get("created") or 0,
        model=body.get("model") or "",
        choices=choices,
        stepblend=routing(info, request_id),
    )
    usage = _usage(body.get("usage"))
    if usage is not None:
        out.usage.CopyFrom(usage)
    return out


def chunk(body: dict[str, Any], request_id: str) -> chat_pb2.ChatCompletionChunk:
    choices = []
    for choice in body.get("choices") or ():
        delta = choice.get("delta") or {}
        choices.append(
            chat_pb2.ChunkChoice(
                index=choice.get("index") or 0,
                finish_reason=choice.get("finish_reason") or "",
                delta=chat_pb2.Delta(
                    role=delta.get("role") or "",
                    content=delta.get("content") or "",
                    reasoning_content=delta.get("reasoning_content") or "",
                    tool_calls=[
                        chat_pb2.ToolCallDelta(
                            index=c.get("index") or 0,
                            id=c.get("id") or "",
                            name=(c.get("function") or {}).get("name") or "",
                            arguments=(c.get("function") or {}).get("arguments") or "",
                        )
                        for c in delta.get("tool_calls") or ()
                    ],
                ),
            )
        )
    out = chat_pb2.ChatCompletionChunk(
        id=body.get("id") or "", created=body.get("created") or 0, model=body.get("model") or "", choices=choices
    )
    usage = _usage(body.get("usage"))
    if usage is not None:
        out.usage.CopyFrom(usage)
    if "stepblend" in body:
        out.stepblend.CopyFrom(routing(body["stepblend"], request_id))
    return out


def embeddings(body: dict[str, Any], info: dict[str, Any], request_id: str) -> chat_pb2.EmbedResponse:
    """An embeddings answer (OpenAI's list, floats) as the typed response."""
    usage = body.get("usage") or {}
    return chat_pb2.EmbedResponse(
        model=body.get("model") or "",
        data=[chat_pb2.Embedding(index=e.get("index") or 0, vector=e["embedding"]) for e in body.get("data") or ()],
        usage=chat_pb2.ChatUsage(
            prompt_tokens=usage.get("prompt_tokens") or 0, total_tokens=usage.get("total_tokens") or 0
        ),
        stepblend=routing(info, request_id),
    )
