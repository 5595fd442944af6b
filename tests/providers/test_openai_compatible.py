from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.providers.adapters import (
    RequestRefused,
    UpstreamFormatError,
    UpstreamStreamError,
    parse_body,
)
from services.providers.adapters.base import TokenUsage
from services.providers.adapters.openai_compatible import (
    OpenAICompatible,
    Quirks,
    build_request,
    error_details,
    parse_chunk,
    parse_completion,
)
from tests.providers.conftest import candidate

DEFAULT = Quirks()
BODY: dict[str, Any] = {"model": "lowest-cost", "messages": [{"role": "user", "content": "Hi"}]}


def sent(body: dict[str, Any], stream: bool = False, quirks: Quirks = DEFAULT, **fields: Any) -> dict[str, Any]:
    cand = candidate("openai", "o3-mini", "o3-mini-2025-01-31", **fields)
    request = build_request(body, cand, stream, quirks)
    assert request.path == "/chat/completions"
    result: dict[str, Any] = orjson.loads(request.content)
    return result


def test_model_becomes_the_upstream_id_and_unknown_fields_pass_through() -> None:
    out = sent({**BODY, "temperature": 0.2, "some_new_openai_field": {"x": 1}, "stepblend_max_cost": 0.1})
    assert out["model"] == "o3-mini-2025-01-31"
    assert out["temperature"] == 0.2
    assert out["some_new_openai_field"] == {"x": 1}
    assert "stepblend_max_cost" not in out


def test_renames_move_the_value() -> None:
    out = sent({**BODY, "max_tokens": 50}, param_renames={"max_tokens": "max_completion_tokens"})
    assert out["max_completion_tokens"] == 50
    assert "max_tokens" not in out


def test_unsupported_parameter_is_refused_naming_it() -> None:
    with pytest.raises(RequestRefused) as refused:
        sent({**BODY, "temperature": 0.5}, unsupported_params=["temperature"])
    assert refused.value.param == "temperature"
    assert refused.value.code == "unsupported_parameter"
    assert "temperature" in refused.value.message


def test_unsupported_parameter_sent_as_null_is_dropped() -> None:
    out = sent({**BODY, "temperature": None}, unsupported_params=["temperature"])
    assert "temperature" not in out


def test_output_budget_fills_a_missing_max_tokens_only() -> None:
    assert sent(BODY, output_budget=256)["max_tokens"] == 256
    assert sent({**BODY, "max_tokens": 10}, output_budget=256)["max_tokens"] == 10
    assert sent({**BODY, "max_completion_tokens": 10}, output_budget=256).get("max_tokens") is None
    assert "max_tokens" not in sent(BODY)


def test_output_budget_uses_the_renamed_parameter() -> None:
    out = sent(BODY, output_budget=256, param_renames={"max_tokens": "max_completion_tokens"})
    assert out["max_completion_tokens"] == 256
    assert "max_tokens" not in out


def test_stream_always_asks_for_usage_and_keeps_other_stream_options() -> None:
    out = sent({**BODY, "stream": True, "stream_options": {"include_usage": False, "other": 1}}, stream=True)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True, "other": 1}
    assert sent(BODY, stream=True)["stream_options"] == {"include_usage": True}


def test_non_stream_sends_no_stream_options() -> None:
    out = sent({**BODY, "stream": False, "stream_options": {"include_usage": True}})
    assert "stream_options" not in out
    assert "stream" not in out


def test_vendor_without_stream_options() -> None:
    out = sent(
        {**BODY, "stream_options": {"include_usage": True}}, stream=True, quirks=Quirks(supports_stream_options=False)
    )
    assert out["stream"] is True
    assert "stream_options" not in out


def test_parse_body_refuses_what_is_not_an_object() -> None:
    with pytest.raises(RequestRefused):
        parse_body(b"[1, 2]")
    with pytest.raises(RequestRefused):
        parse_body(b"{not json")


def chunk(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "id": "chatcmpl-upstream",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_x",
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": None, "finish_reason": None}],
        "usage": None,
    }
    return orjson.dumps({**base, **fields})


def test_chunk_gets_our_id_model_and_created_and_stays_faithful() -> None:
    out, usage = parse_chunk(chunk(), "chatcmpl-req1", "gpt-4o-mini", created=1700000000)
    assert usage is None
    assert out is not None
    obj = orjson.loads(out)
    assert (obj["id"], obj["model"], obj["created"]) == ("chatcmpl-req1", "gpt-4o-mini", 1700000000)
    assert obj["choices"] == orjson.loads(chunk())["choices"]
    assert obj["system_fingerprint"] == "fp_x"
    assert "usage" not in obj


def test_chunk_keeps_usage_null_when_the_client_asked_for_usage() -> None:
    out, _ = parse_chunk(chunk(), "chatcmpl-req1", "gpt-4o-mini", include_usage=True)
    assert out is not None
    obj = orjson.loads(out)
    assert "usage" in obj and obj["usage"] is None


def test_usage_only_chunk_is_swallowed_and_its_usage_returned() -> None:
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    out, got = parse_chunk(chunk(choices=[], usage=usage), "chatcmpl-req1", "gpt-4o-mini", include_usage=True)
    assert out is None
    assert got == TokenUsage(9, 3, 12, 4)


def test_usage_on_a_content_chunk_is_returned_and_not_forwarded() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    out, got = parse_chunk(chunk(usage=usage), "chatcmpl-req1", "gpt-4o-mini")
    assert got == TokenUsage(5, 2, 7, 0)
    assert out is not None and "usage" not in orjson.loads(out)


def test_error_inside_a_stream_raises() -> None:
    with pytest.raises(UpstreamStreamError, match="overloaded"):
        parse_chunk(b'{"error": {"message": "overloaded", "type": "server_error"}}', "c", "m")
    with pytest.raises(UpstreamFormatError):
        parse_chunk(b"{oops", "c", "m")


def test_completion_is_rewritten_with_usage() -> None:
    upstream = {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11, "prompt_cache_hit_tokens": 8},
    }
    out, usage = parse_completion(orjson.dumps(upstream), "chatcmpl-req2", "deepseek-chat-v3", created=42)
    obj = orjson.loads(out)
    assert (obj["id"], obj["model"], obj["created"]) == ("chatcmpl-req2", "deepseek-chat-v3", 42)
    assert obj["choices"] == upstream["choices"]
    assert obj["usage"] == upstream["usage"]
    assert usage == TokenUsage(10, 1, 11, 8)


def test_completion_without_choices_is_a_format_error() -> None:
    with pytest.raises(UpstreamFormatError):
        parse_completion(b'{"id": "x"}', "c", "m")


def test_error_details_reads_vendor_variants() -> None:
    openai = error_details(
        b'{"error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": "x"}}'
    )
    assert (openai.message, openai.param, openai.code) == ("bad", "messages", "x")
    assert error_details(b'{"error": "plain"}').message == "plain"
    assert error_details(b'{"detail": "fastapi style"}').message == "fastapi style"
    assert error_details(b"<html>502</html>").message == "<html>502</html>"


def test_adapter_class_delegates_with_its_quirks() -> None:
    adapter = OpenAICompatible(Quirks(supports_stream_options=False))
    request = adapter.build_request(BODY, candidate("mistral", "mistral-small"), True)
    assert "stream_options" not in orjson.loads(request.content)
    assert adapter.auth_headers("k") == {"authorization": "Bearer k"}


# A Groq stream as Groq sent it before it took stream_options: usage only in
# `x_groq.usage` of the finish chunk (recorded in the Vercel AI SDK's Groq tests).
GROQ_STREAM = (
    b'data: {"id":"chatcmpl-e7f8","object":"chat.completion.chunk","created":1729171479,"model":"gemma2-9b-it",'
    b'"system_fingerprint":"fp_10c08bf97d","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    b'"logprobs":null,"finish_reason":null}],"x_groq":{"id":"req_01jadadp0femyae9kav1gpkhe8"}}\n\n'
    b'data: {"id":"chatcmpl-e7f8","object":"chat.completion.chunk","created":1729171479,"model":"gemma2-9b-it",'
    b'"system_fingerprint":"fp_10c08bf97d","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,'
    b'"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-e7f8","object":"chat.completion.chunk","created":1729171479,"model":"gemma2-9b-it",'
    b'"system_fingerprint":"fp_10c08bf97d","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],'
    b'"x_groq":{"id":"req_01jadadp0femyae9kav1gpkhe8","usage":{"queue_time":0.061348671,"prompt_tokens":18,'
    b'"prompt_time":0.000211569,"completion_tokens":439,"completion_time":0.798181818,"total_tokens":457,'
    b'"total_time":0.798393387}}}\n\n'
    b"data: [DONE]\n\n"
)


def test_groq_usage_envelope_is_read_and_stripped() -> None:
    from services.providers.adapters.sse import SseDecoder

    adapter = OpenAICompatible(Quirks(usage_envelope="x_groq"))
    translator = adapter.stream_translator("chatcmpl-r", "llama", created=5)
    decoder = SseDecoder()
    out = [orjson.loads(c) for event in decoder.feed(GROQ_STREAM) for c in translator.feed(event)]
    assert len(out) == 3
    assert not any("x_groq" in c for c in out)
    assert translator.usage == TokenUsage(18, 439, 457, 0)
    assert translator.complete and translator.ended


def test_translator_knows_a_cut_stream_from_a_whole_one() -> None:
    from services.providers.adapters.sse import SseEvent

    translator = OpenAICompatible().stream_translator("c", "m")
    translator.feed(SseEvent(chunk()))
    assert not translator.complete and not translator.ended
    translator.feed(SseEvent(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])))
    assert translator.complete and not translator.ended
    assert translator.feed(SseEvent(b"[DONE]")) == []
    assert translator.ended


def test_vendor_quirks_shape_the_body() -> None:
    mistral = Quirks(
        supports_stream_options=False,
        param_renames={"seed": "random_seed", "max_completion_tokens": "max_tokens"},
        accepted_params=frozenset({"model", "messages", "max_tokens", "random_seed", "temperature", "n"}),
        dropped_params=frozenset({"user"}),
    )
    out = sent(
        {**BODY, "seed": 3, "user": "u", "n": 1, "top_logprobs": 0}, stream=True, quirks=mistral, output_budget=64
    )
    assert out == {
        "model": "o3-mini-2025-01-31",
        "messages": BODY["messages"],
        "random_seed": 3,
        "n": 1,
        "max_tokens": 64,
        "stream": True,
    }
    with pytest.raises(RequestRefused) as refused:
        sent({**BODY, "logit_bias": {"1": 2}}, quirks=mistral)
    assert refused.value.param == "logit_bias" and "'openai'" in refused.value.message
    deepseek = Quirks(dropped_message_fields=frozenset({"reasoning_content"}))
    history = [{"role": "assistant", "content": "x", "reasoning_content": "y"}]
    assert sent({**BODY, "messages": history}, quirks=deepseek)["messages"] == [{"role": "assistant", "content": "x"}]


def test_quirks_are_validated_by_type() -> None:
    assert Quirks.parse({"refused_params": ["n"]}).refused_params == frozenset({"n"})
    assert Quirks.parse({"param_renames": {"seed": "random_seed"}}).param_renames == {"seed": "random_seed"}
    for bad in ({"refused_params": "n"}, {"supports_stream_options": "no"}, {"param_renames": {"a": 1}}):
        with pytest.raises(TypeError):
            Quirks.parse(bad)
