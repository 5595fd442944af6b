from __future__ import annotations

import orjson

from services.gateway.codecs.openai_chat import parse
from services.gateway.features import TOKENS_PER_IMAGE, count_tokens, features
from services.gateway.tokens import o200k_base

ENCODING = o200k_base()


def feats(**body: object) -> object:
    request, upstream = parse(orjson.dumps(body))
    return features(request, ENCODING, upstream)


def test_prompt_tokens_cover_the_text_and_grow_with_it() -> None:
    short = feats(model="m", messages=[{"role": "user", "content": "Hello"}])
    long = feats(model="m", messages=[{"role": "user", "content": "Hello " * 200}])
    assert short.prompt_tokens >= len(ENCODING.encode_ordinary("Hello"))
    assert long.prompt_tokens >= short.prompt_tokens + 190


def test_counts_are_openais_and_special_token_text_is_plain_text() -> None:
    # The shipped rank file is OpenAI's o200k_base: known ids for known text.
    assert ENCODING.encode_ordinary("hello world") == [24912, 2375]
    # A prompt that mentions a special token (a question about tokenizers) is text, not a failure.
    plain = count_tokens(ENCODING, "What does <|endoftext|> mean?")
    assert plain == len(ENCODING.encode_ordinary("What does <|endoftext|> mean?")) > 5
    assert feats(model="m", messages=[{"role": "user", "content": "say <|endoftext|> please"}]).prompt_tokens > 5


def test_flags_and_budget() -> None:
    f = feats(
        model="m",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        max_completion_tokens=321,
    )
    assert f.needs_vision and f.needs_tools and f.needs_json_schema
    assert f.max_output_tokens == 321
    assert f.prompt_tokens > TOKENS_PER_IMAGE


def test_plain_request_needs_nothing_special() -> None:
    f = feats(model="m", messages=[{"role": "user", "content": "Hi"}], response_format={"type": "json_object"})
    assert not (f.needs_vision or f.needs_tools or f.needs_json_schema)
    assert f.max_output_tokens == 0


def test_params_name_what_the_body_sets() -> None:
    f = feats(
        model="m",
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0.2,
        n=1,
        logit_bias={"1": 2},
        max_tokens=5,
        seed=None,
        stepblend_max_cost=0.1,
    )
    assert sorted(f.params) == ["logit_bias", "temperature"]


def test_params_leave_out_what_asks_for_nothing_and_keep_what_asks_for_something() -> None:
    # OpenAI's defaults: an adapter drops them for a model that refuses the parameter,
    # so the router must not drop that model for them.
    hi = [{"role": "user", "content": "Hi"}]
    inert = {
        "response_format": {"type": "text"},
        "logprobs": False,
        "parallel_tool_calls": True,
        "presence_penalty": 0,
        "stream": False,
    }
    meant = {"response_format": {"type": "json_object"}, "logprobs": True, "parallel_tool_calls": False}
    assert list(feats(model="m", messages=hi, **inert).params) == []
    assert sorted(feats(model="m", messages=hi, **meant, presence_penalty=0.5, stream=True).params) == [
        "logprobs",
        "parallel_tool_calls",
        "presence_penalty",
        "response_format",
        "stream",
    ]
