"""The gRPC Chat API's messages are a published contract: their field numbers
never change. This snapshot fails when one does; adding fields is fine (add
them here too)."""

from __future__ import annotations

from stepblend.v1 import chat_pb2

PUBLISHED = {
    "EmbedRequest": {"model": 1, "input": 2, "dimensions": 3},
    "Embedding": {"index": 1, "vector": 2},
    "EmbedResponse": {"model": 1, "data": 2, "usage": 3, "stepblend": 4},
    "ChatRequest": {
        "model": 1,
        "messages": 2,
        "max_tokens": 3,
        "temperature": 4,
        "top_p": 5,
        "stop": 6,
        "seed": 7,
        "tools": 8,
        "tool_choice": 9,
        "response_format": 10,
        "json_schema": 11,
        "max_cost_usd": 12,
        "strategy": 13,
        "user": 14,
        "include_usage": 15,
        "presence_penalty": 16,
        "frequency_penalty": 17,
    },
    "ChatMessage": {
        "role": 1,
        "content": 2,
        "parts": 3,
        "name": 4,
        "tool_calls": 5,
        "tool_call_id": 6,
        "reasoning_content": 7,
    },
    "ContentPart": {"text": 1, "image_url": 2},
    "Tool": {"name": 1, "description": 2, "parameters": 3},
    "ToolCall": {"id": 1, "name": 2, "arguments": 3},
    "ChatUsage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    "RouteAttempt": {"provider": 1, "model": 2, "outcome": 3, "status": 4, "detail": 5},
    "Routing": {
        "routed_model": 1,
        "provider": 2,
        "strategy_used": 3,
        "estimated_cost_usd": 4,
        "actual_cost_usd": 5,
        "attempts": 6,
        "request_id": 7,
    },
    "Choice": {"index": 1, "message": 2, "finish_reason": 3},
    "ChatCompletion": {"id": 1, "created": 2, "model": 3, "choices": 4, "usage": 5, "stepblend": 6},
    "ToolCallDelta": {"index": 1, "id": 2, "name": 3, "arguments": 4},
    "Delta": {"role": 1, "content": 2, "tool_calls": 3, "reasoning_content": 4},
    "ChunkChoice": {"index": 1, "delta": 2, "finish_reason": 3},
    "ChatCompletionChunk": {"id": 1, "created": 2, "model": 3, "choices": 4, "usage": 5, "stepblend": 6},
}


def test_published_field_numbers_never_change() -> None:
    for message, fields in PUBLISHED.items():
        descriptor = chat_pb2.DESCRIPTOR.message_types_by_name[message]
        now = {f.name: f.number for f in descriptor.fields}
        for name, number in fields.items():
            assert now.get(name) == number, f"{message}.{name} was field {number}, is now {now.get(name)}"


def test_every_message_is_in_the_snapshot() -> None:
    assert set(chat_pb2.DESCRIPTOR.message_types_by_name) == set(PUBLISHED)
