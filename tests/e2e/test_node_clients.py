"""Node clients through StepBlend, installed from the npm registry: the official
@anthropic-ai/sdk (create, stream, a tool round trip, countTokens, an error) on
models that OpenAI, Anthropic and Groq serve, Claude Code itself, run
non-interactively (`claude -p`) with ANTHROPIC_BASE_URL pointed at StepBlend, and
the Vercel AI SDK's OpenAI Responses model (generateText, streamText, a tool loop)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Account, System
from tests.support.node import install

SERVED = [("gpt-4o-mini", "openai"), ("claude-3-5-haiku-20241022", "anthropic"), ("llama-3.1-8b-instant", "groq")]


@pytest.fixture(scope="module")
def node_clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield install(tmp_path_factory.mktemp("npm"))


def anthropic_base(system: System) -> str:
    return system.base_url.removesuffix("/v1")


@pytest.mark.parametrize(("model", "provider"), SERVED, ids=[p for _, p in SERVED])
def test_the_node_anthropic_sdk(
    node_clients: Path, system: System, account: Account, model: str, provider: str
) -> None:
    env = {**os.environ, "BASE_URL": anthropic_base(system), "TOKEN": account.token, "MODEL": model}
    done = subprocess.run(
        ["node", "anthropic_client.mjs"], cwd=node_clients, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

    create = seen["create"]
    assert create["text"].startswith("Hello! You said: Hello from Node")
    assert (create["model"], create["stop_reason"]) == (model, "end_turn")
    assert create["usage"]["input_tokens"] > 0 and create["usage"]["output_tokens"] > 0
    assert (create["stepblend"]["provider"], create["stepblend"]["routed_model"]) == (provider, model)

    stream = seen["stream"]
    assert stream["text"] == create["text"]
    assert (stream["events"][0], stream["events"][-1]) == ("message_start", "message_stop")
    assert "content_block_delta" in stream["events"] and "message_delta" in stream["events"]
    assert stream["stop_reason"] == "end_turn"
    assert stream["output_tokens"] == create["usage"]["output_tokens"]

    tools = seen["tools"]
    assert tools["first_stop"] == "tool_use"
    assert tools["call"]["name"] == "get_weather" and isinstance(tools["call"]["input"]["city"], str)
    assert (tools["second_stop"], tools["second_blocks"]) == ("end_turn", ["text"])

    assert seen["count"] > 0
    assert seen["error"] == {"name": "AuthenticationError", "status": 401, "type": "authentication_error"}


@pytest.mark.parametrize(("model", "provider"), [("claude-sonnet-4-5-20250929", "anthropic"), ("gpt-5-mini", "openai")])
def test_claude_code_runs_through_stepblend(
    node_clients: Path, system: System, account: Account, tmp_path: Path, model: str, provider: str
) -> None:
    # A model Claude Code knows, served by Anthropic, and one it does not, served by
    # OpenAI in OpenAI's wire format: both answer Claude Code's real requests (its
    # system prompt, its tools, `thinking`, a 32k max_tokens, streaming).
    marker = f"claude-code-{provider}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": anthropic_base(system),
        "ANTHROPIC_AUTH_TOKEN": account.token,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        # No internet here: nothing but the model calls.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [str(node_clients / "node_modules" / ".bin" / "claude"), "-p", marker, "--output-format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["is_error"] is False, result.get("result")
    assert result["result"].startswith("Hello! You said:")
    assert list(result["modelUsage"]) == [model]
    # Every call it made reached the provider with the account's own key, and the
    # provider got Claude Code's question.
    calls = [r for r in system.mock_requests() if account.keys[provider] in json.dumps(r["headers"])]
    assert calls and any(marker in json.dumps(r["body"]) for r in calls)


@pytest.mark.parametrize(
    ("model", "provider"),
    [("openai:gpt-4o-mini", "openai"), ("claude-3-5-haiku-20241022", "anthropic")],
    ids=["openai", "anthropic"],
)
def test_the_vercel_ai_sdk_on_the_responses_api(
    node_clients: Path, system: System, account: Account, model: str, provider: str
) -> None:
    env = {**os.environ, "BASE_URL": system.base_url, "TOKEN": account.token, "MODEL": model}
    done = subprocess.run(
        ["node", "vercel_client.mjs"], cwd=node_clients, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    routed = model.split(":")[-1]

    generate = seen["generate"]
    assert generate["text"].startswith("Hello! You said: Hello from Vercel")
    assert (generate["finishReason"], generate["modelId"]) == ("stop", routed)
    assert generate["usage"]["inputTokens"] > 0 and generate["usage"]["outputTokens"] > 0
    assert generate["responseId"].startswith("resp_")
    assert (generate["stepblend"]["provider"], generate["stepblend"]["routed_model"]) == (provider, routed)
    assert generate["provider"] == provider

    stream = seen["stream"]
    assert stream["pieces"] > 1 and stream["text"] == generate["text"]
    assert (stream["finishReason"], stream["outputTokens"]) == ("stop", generate["usage"]["outputTokens"])

    # The SDK ran the tool with the model's arguments and sent the result back.
    tools = seen["tools"]
    assert len(tools["calls"]) == 1 and isinstance(tools["calls"][0], str)
    assert tools["steps"] == ["tool-calls", "stop"] and tools["text"]
    sent = json.dumps([r["body"] for r in system.mock_requests() if account.keys[provider] in json.dumps(r["headers"])])
    assert f"Sunny, 21C in {tools['calls'][0]}" in sent
