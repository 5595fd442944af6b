from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from services.gateway.codecs.openai_chat import parse
from services.gateway.errors import ApiError


def body(**fields: object) -> bytes:
    return orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], **fields})


def test_stepblend_fields_are_read_and_never_passed_upstream() -> None:
    request, upstream = parse(body(stepblend_max_cost=0.01, stepblend_strategy="fastest", seed=7, custom_flag=True))
    assert request.stepblend_max_cost == Decimal("0.01")
    assert request.stepblend_strategy == "fastest"
    assert not any(k.startswith("stepblend_") for k in upstream)
    assert upstream["seed"] == 7 and upstream["custom_flag"] is True


def test_content_parts_and_tool_turns_are_accepted() -> None:
    request, _ = parse(
        orjson.dumps(
            {
                "model": "gpt-4o",
                "messages": [
                    {"role": "developer", "content": "Be brief"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                ],
            }
        )
    )
    assert len(request.messages) == 4


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{nope", None),
        (b"[1, 2]", None),
        (orjson.dumps({"messages": [{"role": "user", "content": "x"}]}), "model"),
        (orjson.dumps({"model": "gpt-4o", "messages": []}), "messages"),
        (body(temperature=3), "temperature"),
        (body(max_tokens=0), "max_tokens"),
        (body(stepblend_max_cost=-1), "stepblend_max_cost"),
        (orjson.dumps({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}), "messages.0.role"),
    ],
)
def test_bad_bodies_are_400_with_the_param(raw: bytes, param: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        parse(raw)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    if param is not None:
        assert caught.value.param == param
    assert set(caught.value.body()["error"]) == {"message", "type", "param", "code"}
