"""Fuzzing the real gateway over HTTP (issue 9, item 1).

- schemathesis drives every operation of the gateway's own `/openapi.json` (the
  chat body is documented there from `ChatRequest`), valid and invalid inputs, with
  a valid token;
- hypothesis POSTs chat bodies built to hurt: odd unicode (RTL, zero-width, NUL,
  lone surrogates), huge and tiny numbers, wrong types in every field, deep nesting,
  long runs without whitespace, non-objects and bytes that are not JSON.

For every answer: no 5xx, an `x-request-id`, and an error is always OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` (a stream's error events too).
Then the documented limits: 413 over the 8 MiB body limit (also for a chunked body,
refused without being buffered whole), at most `MAX_MESSAGES` messages, at most
`MAX_DEPTH` levels of nesting.

The runs are derandomized so CI is repeatable; STEPBLEND_FUZZ_RANDOM=1 explores
new examples, STEPBLEND_FUZZ_EXAMPLES raises the count.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from services.common.config import Settings
from services.gateway.app import create_app
from services.gateway.schemas import MAX_BODY_BYTES, MAX_DEPTH, MAX_MESSAGES
from tests.hardening.stack import Account, Stack, error_of, is_anthropic_error, is_openai_error, running

RANDOM = bool(os.environ.get("STEPBLEND_FUZZ_RANDOM"))
EXAMPLES = int(os.environ.get("STEPBLEND_FUZZ_EXAMPLES", "0") or 0)
FUZZ = settings(
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
SEEN: Counter[str] = Counter()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(Path(tmp_path_factory.mktemp("fuzz"))) as system:
        yield system
    statuses = {k: v for k, v in SEEN.items() if k.isdigit()}
    print(
        f"\nfuzz: {sum(statuses.values())} requests, statuses {statuses}; by operation { {k: v for k, v in SEEN.items() if not k.isdigit()} }"
    )


@pytest.fixture(scope="module")
def api_account(stack: Stack) -> Account:
    return stack.account()


@pytest.fixture(scope="module")
def chat_account(stack: Stack) -> Account:
    return stack.account()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as c:
        yield c


def check_answer(status: int, headers: Any, content: bytes, what: str, anthropic: bool = False) -> None:
    """No 5xx; an x-request-id; errors (a stream's too) in the dialect's shape: OpenAI's,
    or Anthropic's on the Messages API."""
    SEEN[str(status)] += 1
    shaped = is_anthropic_error if anthropic else is_openai_error
    assert status < 500, f"{what}: {status} {content[:600]!r}"
    assert headers.get("x-request-id"), f"{what}: no x-request-id"
    if status >= 400:
        assert shaped(json.loads(content)), f"{what}: {status} {content[:600]!r}"
    elif headers.get("content-type", "").startswith("text/event-stream"):
        for line in content.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                event = json.loads(line[6:])
                if "error" in event:
                    assert shaped(event), f"{what}: stream error {line[:600]!r}"
    else:
        json.loads(content)


# -- schemathesis: every operation of the gateway's OpenAPI schema ---------------
# The schema is the app's own (what /openapi.json serves, checked below), loaded at
# collection so that each operation is a test of its own. schemathesis' pytest
# plugin does not run under pytest 9, so cases are drawn from its strategies.

SPEC = create_app(Settings.from_env()).openapi()
OPERATIONS = {
    op.label: op for op in (result.ok() for result in schemathesis.openapi.from_dict(SPEC).get_all_operations())
}


def test_the_served_schema_is_the_one_fuzzed(stack: Stack, client: httpx.Client) -> None:
    served = client.get(f"{stack.gateway_url}/openapi.json").json()
    assert served["paths"] == SPEC["paths"]
    body = served["paths"]["/api/v1/chat/completions"]["post"]["requestBody"]
    assert "messages" in body["content"]["application/json"]["schema"]["properties"]


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@given(data=st.data())
@settings(FUZZ, max_examples=EXAMPLES or 14)
def test_openapi_operations_answer_no_5xx_and_openai_errors(
    label: str, data: st.DataObject, stack: Stack, api_account: Account
) -> None:
    operation = OPERATIONS[label]
    case = data.draw(
        st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    )
    response = case.call(base_url=stack.gateway_url, headers=api_account.headers, timeout=60)
    SEEN[label] += 1
    headers = {k.lower(): v[0] if isinstance(v, list) else v for k, v in response.headers.items()}
    check_answer(
        response.status_code,
        headers,
        response.content,
        f"{label} {case.path_parameters} {case.query} body={case.body!r:.300}",
        anthropic="/messages" in label,
    )


# -- hypothesis: chat bodies built to hurt ---------------------------------------

MODELS = (
    "gpt-4o-mini",
    "openai:gpt-4o",
    "anthropic:claude-3-5-haiku-20241022",
    "groq:llama-3.1-8b-instant",
    "deepseek-chat",
    "lowest-cost",
    "balanced",
    "fastest",
    "max_reliability",
)
ODD = (
    "\u202eevil\u202c",  # right-to-left override
    "\u200b\u200c\u200d\ufeff",  # zero-width characters and a BOM
    "\x00nul\x00",
    "e\u0301\u0301\u0301\u0301",  # stacked combining marks
    "\U0001f469\u200d\U0001f4bb\U0001f1fa\U0001f1f8",  # ZWJ emoji and a flag
    "\ud800",  # a lone surrogate: not valid Unicode
    "\uffff\U0010ffff",
    "𝔲𝔫𝔦𝔠𝔬𝔡𝔢 ﷽ ︎",
)
text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(ODD),
    st.text(st.characters(codec="utf-8", categories=("Lo", "Mn", "Cf", "So", "Zs")), max_size=40),
    # Long runs without whitespace: BPE cost grows with a word's length.
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "7", "丁", "🙂", "ab"]), st.integers(2_000, 40_000)),
)
huge = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 2**64, 10**30, -(10**30), 1e308, -1e308, 5e-324, -0.0, 0.5]),
    st.floats(allow_nan=False, allow_infinity=False),
)
leaf = st.one_of(st.none(), st.booleans(), huge, text)
anything = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)
part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": text})}),
    st.dictionaries(st.sampled_from(["type", "text", "image_url", "x"]), anything, max_size=3),
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "developer", "assistant", "tool"])},
    optional={
        "content": st.one_of(text, st.lists(part, max_size=3), st.none()),
        "name": text,
        "tool_call_id": text,
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {
                    "id": text,
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries({"name": text, "arguments": text}),
                }
            ),
            max_size=2,
        ),
    },
)
SANE_FIELDS = {
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "max_tokens": st.integers(1, 64),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "stop": st.one_of(text, st.lists(text, max_size=4)),
    "user": text,
    "metadata": st.dictionaries(text, text, max_size=3),
    "stepblend_strategy": st.sampled_from(["lowest_cost", "balanced", "fastest", "max_reliability"]),
}
WILD_FIELDS = {
    **{name: anything for name in SANE_FIELDS},
    "max_tokens": huge,
    "max_completion_tokens": huge,
    "temperature": huge,
    "top_p": huge,
    "n": st.integers(-3, 3),
    "seed": huge,
    "logit_bias": st.dictionaries(text, huge, max_size=3),
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}, {"type": "json_schema"}]),
    "tools": st.lists(
        st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries({"name": text})}),
        max_size=2,
    ),
    "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), anything),
    "stepblend_max_cost": st.one_of(huge, text),
    "stepblend_strategy": st.one_of(st.sampled_from(["lowest_cost", "balanced", "fastest", "max_reliability"]), text),
    "parallel_tool_calls": anything,
}
model = st.one_of(st.sampled_from(MODELS), st.sampled_from(MODELS), st.sampled_from(MODELS), text)
well_formed = st.fixed_dictionaries(
    {"model": model, "messages": st.lists(message, min_size=1, max_size=4)}, optional=SANE_FIELDS
)


def _mutate(body: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Replace or add one field, anywhere in the first message too, with any JSON value."""
    key = data.draw(st.sampled_from(["model", "messages", *WILD_FIELDS, "role", "content", "extra"]))
    value = data.draw(WILD_FIELDS.get(key, anything))
    if key in ("role", "content") and isinstance(body.get("messages"), list) and body["messages"]:
        body["messages"][0][key] = value
    else:
        body[key] = value
    return body


def _nest(depth: int, leaf_value: Any) -> Any:
    value = leaf_value
    for i in range(depth):
        value = [value] if i % 2 else {"n": value}
    return value


@st.composite
def chat_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "valid", "mutated", "mutated", "deep", "not-object", "not-json"]))
    if kind == "not-json":
        return draw(
            st.one_of(
                st.binary(max_size=64),
                st.sampled_from([b"", b"{", b'{"model": "gpt-4o-mini",}', b"\xff\xfe{}", b"NaN"]),
            )
        )
    if kind == "not-object":
        return json.dumps(draw(anything)).encode()
    body: dict[str, Any] = draw(well_formed)
    if kind == "mutated":
        body = _mutate(body, draw(st.data()))
    elif kind == "deep":
        depth = draw(st.sampled_from([MAX_DEPTH - 3, MAX_DEPTH + 1, 300, 1_000, 1_100]))
        where = draw(st.sampled_from(["extra", "tools", "content", "response_format", "stream_options"]))
        nested = _nest(depth, "x")
        if where == "extra":
            body["metadata"] = nested
        elif where == "tools":
            body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": nested}}]
            body["model"] = "gpt-4o-mini"
        elif where == "content":
            body["messages"][0]["content"] = [{"type": "text", "text": "hi", "extra": nested}]
        else:
            body[where] = {"deep": nested}
    # ensure_ascii: a lone surrogate goes on the wire as its \\ud800 escape.
    return json.dumps(body, ensure_ascii=True).encode()


@given(raw=chat_bodies())
@settings(FUZZ, max_examples=EXAMPLES or 160)
def test_chat_bodies_built_to_hurt_get_no_5xx_and_openai_errors(
    raw: bytes, stack: Stack, chat_account: Account, client: httpx.Client
) -> None:
    started = time.monotonic()
    response = client.post(
        f"{stack.base_url}/chat/completions",
        content=raw,
        headers={**chat_account.headers, "content-type": "application/json"},
    )
    SEEN["POST chat bodies"] += 1
    check_answer(response.status_code, response.headers, response.content, f"body {raw[:300]!r}")
    # No body may hold the gateway (whose event loop serves everyone) for long.
    assert time.monotonic() - started < 5, f"{time.monotonic() - started:.1f}s for {raw[:200]!r}"


# -- hypothesis: Anthropic Messages bodies ----------------------------------------

block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries(
        {"type": st.just("image"), "source": st.fixed_dictionaries({"type": st.just("url"), "url": text})}
    ),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": text, "name": text, "input": anything}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": text, "content": anything}),
    st.fixed_dictionaries({"type": st.sampled_from(["document", "thinking", "server_tool_use", "x"])}),
    st.dictionaries(st.sampled_from(["type", "text", "source", "cache_control"]), anything, max_size=3),
)
claude_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "x"]),
        "content": st.one_of(text, st.lists(block, max_size=3), anything),
    }
)
claude_fields = {
    "system": st.one_of(text, st.lists(block, max_size=2), anything),
    "stream": st.one_of(st.booleans(), anything),
    "stop_sequences": st.one_of(st.lists(text, max_size=3), anything),
    "temperature": huge,
    "top_k": huge,
    "tools": st.one_of(
        st.lists(st.fixed_dictionaries({"name": text, "input_schema": anything}), max_size=2),
        st.lists(st.fixed_dictionaries({"type": text, "name": text}), max_size=2),
        anything,
    ),
    "tool_choice": st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none"])}), anything
    ),
    "thinking": anything,
    "metadata": anything,
    "stepblend_max_cost": st.one_of(huge, text),
}
# Bodies that should be served (or refused for what they ask, never for their shape).
sane_claude = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "max_tokens": st.integers(1, 64),
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.just("user"), "content": st.text(min_size=1, max_size=60)}),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "system": st.text(max_size=60),
        "stream": st.booleans(),
        "temperature": st.floats(0, 1),
        "stop_sequences": st.lists(st.text(min_size=1, max_size=8), max_size=3),
        "thinking": st.just({"type": "enabled", "budget_tokens": 1024}),
    },
)
claude_bodies = st.one_of(
    sane_claude,
    sane_claude,
    st.fixed_dictionaries(
        {"model": model, "max_tokens": st.integers(1, 64), "messages": st.lists(claude_message, max_size=3)},
        optional=claude_fields,
    ),
    st.fixed_dictionaries(
        {"model": model, "messages": st.lists(claude_message, max_size=3)},
        optional={**claude_fields, "max_tokens": st.one_of(huge, anything)},
    ),
    anything,
)


@given(body=claude_bodies, path=st.sampled_from(["/messages", "/messages/count_tokens"]))
@settings(FUZZ, max_examples=EXAMPLES or 120)
def test_anthropic_bodies_get_no_5xx_and_anthropic_errors(
    body: Any, path: str, stack: Stack, chat_account: Account, client: httpx.Client
) -> None:
    raw = json.dumps(body, ensure_ascii=True).encode()
    response = client.post(
        f"{stack.base_url}{path}",
        content=raw,
        headers={"x-api-key": chat_account.token, "content-type": "application/json"},
    )
    SEEN[f"POST {path} bodies"] += 1
    check_answer(response.status_code, response.headers, response.content, f"{path} {raw[:300]!r}", anthropic=True)


# -- the documented limits ------------------------------------------------------


def _chat(client: httpx.Client, stack: Stack, account: Account, body: Any) -> httpx.Response:
    return client.post(f"{stack.base_url}/chat/completions", json=body, headers=account.headers)


def test_body_over_the_limit_is_413(stack: Stack, chat_account: Account, client: httpx.Client) -> None:
    content = "x" * (MAX_BODY_BYTES + 1)
    response = _chat(
        client, stack, chat_account, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    )
    assert response.status_code == 413
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["code"] == "request_too_large"


def _rss_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_chunked_body_over_the_limit_is_refused_without_being_buffered(stack: Stack, chat_account: Account) -> None:
    """No content-length: the gateway must count as it reads, not buffer 64 MiB first."""
    gateway = stack.proc("gateway").pid
    before = _rss_hwm_kb(gateway)
    host, port = stack.gateway_url.removeprefix("http://").split(":")
    head = (
        f"POST /api/v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {chat_account.token}\r\n"
        "content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"x" * (1 << 20)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        try:
            for _ in range(64):
                sock.sendall(chunk)
        except OSError:
            pass  # the gateway stopped reading and closed: what we want
        try:
            while not answer.endswith(b"}") and len(answer) < 65536:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    grown_mb = (_rss_hwm_kb(gateway) - before) / 1024
    print(f"\nchunked 64 MiB body: gateway peak RSS grew {grown_mb:.1f} MiB; answer {answer[:60]!r}")
    assert grown_mb < 32, f"the gateway buffered the chunked body: peak RSS +{grown_mb:.0f} MiB"
    if answer:
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_message_count_limit(stack: Stack, chat_account: Account, client: httpx.Client) -> None:
    messages = [{"role": "user", "content": "hi"}] * MAX_MESSAGES
    assert _chat(client, stack, chat_account, {"model": "gpt-4o-mini", "messages": messages}).status_code == 200
    response = _chat(client, stack, chat_account, {"model": "gpt-4o-mini", "messages": [*messages, messages[0]]})
    assert response.status_code == 400
    assert error_of(response)["param"] == "messages"


def test_one_long_message_within_the_body_limit_is_served(
    stack: Stack, chat_account: Account, client: httpx.Client
) -> None:
    """Length is bounded by the body limit alone; a long message is estimated quickly."""
    content = ("lorem ipsum dolor sit amet " * 200_000)[: 3 * 1024 * 1024]
    started = time.monotonic()
    body = {"model": "gpt-4.1", "max_tokens": 100, "messages": [{"role": "user", "content": content}]}
    response = _chat(client, stack, chat_account, body)
    assert response.status_code == 200, response.text[:300]
    assert time.monotonic() - started < 10


def test_nesting_limit(stack: Stack, chat_account: Account, client: httpx.Client) -> None:
    base = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    # The body object itself is level 1, so metadata's value starts at level 2.
    assert _chat(client, stack, chat_account, {**base, "metadata": _nest(MAX_DEPTH - 2, 1)}).status_code == 200
    response = _chat(client, stack, chat_account, {**base, "metadata": _nest(MAX_DEPTH, 1)})
    assert response.status_code == 400
    assert "nest" in error_of(response)["message"]


def test_long_runs_are_estimated_in_linear_time_and_never_lower() -> None:
    """BPE is quadratic in a word's length: 100,000 letters in a row took minutes."""
    import random

    from services.gateway.features import count_tokens
    from services.gateway.tokens import o200k_base

    encoding = o200k_base()
    rng = random.Random(9)
    for sample in (
        "a" * 100_000,
        "".join(rng.choice("abcdefghij") for _ in range(100_000)),
        "".join(chr(0x4E00 + rng.randrange(20_000)) for _ in range(20_000)),
        "🙂" * 50_000 + " " * 50_000 + "!?" * 20_000,
    ):
        started = time.monotonic()
        count_tokens(encoding, sample)
        assert time.monotonic() - started < 2.0, sample[:10]
    for sample in (
        "".join(rng.choice("abcdefghij") for _ in range(1_500)),
        "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichenhersteller " * 3,
        "x" * 300 + " and " + "7" * 200,
    ):
        assert count_tokens(encoding, sample) >= len(encoding.encode_ordinary(sample))
    # Prose, code and compact JSON have no long runs: counted exactly as before.
    ordinary = (
        "The quick brown fox jumps over the lazy dog, twice; then it rests.\n"
        "def f(x: int) -> int:\n    return x * 2  # doubled\n"
        + json.dumps(
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
            separators=(",", ":"),
        )
        + " 我们今天去公园散步，天气非常好。"
    ) * 50
    assert count_tokens(encoding, ordinary) == len(encoding.encode_ordinary(ordinary))
