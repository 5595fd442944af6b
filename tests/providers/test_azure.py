"""The Azure OpenAI adapter, through the real executor over real HTTP to the mock
speaking Azure's paths: the account's endpoint and deployments from its key (read
from the real vault, where the key is put directly: the Keys service would refuse
the mock's address, which is no Azure host), the `api-key` header, the API version,
and Azure's content filter in OpenAI's shapes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import orjson
import pytest
from sqlalchemy import Engine

from services.providers.adapters.azure import Azure
from services.providers.adapters.sse import SseEvent
from services.providers.executor import Executor
from services.providers.settings import ProvidersSettings
from services.providers.upstream import make_client
from services.providers.vault import KeyCache, KeyVault, make_engine, new_kek, parse_kek
from services.providers.vendors import load_vendors
from stepblend.mockprovider.azure import FILTER_ME, FILTER_REPORT
from stepblend.v1 import providers_pb2
from tests.providers.conftest import TIMEOUTS, Mock, candidate, http

API_KEY = "4f1c0d2e9b8a7c6d5e4f3a2b1c0dabcd"
GPT_4O = candidate("azure", "gpt-4o", "gpt-4o")
GPT_41 = candidate("azure", "gpt-4.1", "gpt-4.1")
OPENAI = candidate("openai", "gpt-4.1", "gpt-4.1-2025-04-14")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/providers.db")
    yield engine
    engine.dispose()


@pytest.fixture
def vault(engine: Engine, mock: Mock) -> KeyVault:
    vault = KeyVault(engine, parse_kek(new_kek()))
    vault.create_tables()
    fields = {"api_key": API_KEY, "endpoint": mock.running.url + "/azure", "deployments": {"gpt-4o": "contoso-4o"}}
    vault.put("acct", "azure", orjson.dumps(fields).decode(), masked="…abcd")
    vault.put("acct", "openai", "sk-openai-0123456789abcdef")
    return vault


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client(TIMEOUTS) as shared:
        yield shared


def executor(client: aiohttp.ClientSession, vault: KeyVault, mock: Mock, api_version: str = "") -> Executor:
    vendors = load_vendors({"openai": mock.base_url})
    configured = ProvidersSettings(azure_api_version=api_version).configure(vendors)
    return Executor(client, KeyCache(vault), configured, TIMEOUTS)


async def run(executor: Executor, *candidates: Any, stream: bool = False, **body: Any) -> list[Any]:
    messages = body.pop("messages", [{"role": "user", "content": "Hello there"}])
    request = providers_pb2.ExecuteRequest(
        request_id="az",
        account_id="acct",
        candidates=candidates,
        body=orjson.dumps({"model": "gpt-4o", "messages": messages, "stream": stream, **body}),
        stream=stream,
    )
    return [event async for batch in executor.execute(request) for event in batch]


def attempts(events: list[Any]) -> list[tuple[str, str, str]]:
    return [(e.attempt.provider, e.attempt.model, e.attempt.outcome) for e in events if e.HasField("attempt")]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_the_request_goes_to_the_accounts_deployment_with_its_api_key(
    client: aiohttp.ClientSession, vault: KeyVault, mock: Mock, stream: bool
) -> None:
    events = await run(executor(client, vault, mock), GPT_4O, stream=stream)
    assert attempts(events) == [("azure", "gpt-4o", "ok")]
    [seen] = await mock.requests()
    assert seen["path"] == "/azure/openai/deployments/contoso-4o/chat/completions"
    assert parse_qs(seen["query"]) == {"api-version": ["2024-10-21"]}
    assert seen["headers"]["api-key"] == API_KEY
    assert "authorization" not in seen["headers"]
    assert seen["body"]["model"] == "contoso-4o" and seen["body"]["messages"][0]["content"] == "Hello there"
    if stream:
        got = [orjson.loads(e.chunk) for e in events if e.HasField("chunk")]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in got) == "Hello! You said: Hello there"
        assert not any("prompt_filter_results" in c for c in got)
    else:
        answer = orjson.loads(next(e.completion for e in events if e.HasField("completion")))
        assert answer["model"] == "gpt-4o" and "prompt_filter_results" not in answer
    assert [e.usage.completion_tokens for e in events if e.HasField("usage")] == [5]


async def test_a_model_without_a_deployment_is_not_connected_and_the_walk_goes_on(
    client: aiohttp.ClientSession, vault: KeyVault, mock: Mock
) -> None:
    events = await run(executor(client, vault, mock), GPT_41, OPENAI)
    assert attempts(events) == [("azure", "gpt-4.1", "provider_not_connected"), ("openai", "gpt-4.1", "ok")]
    assert events[0].attempt.detail == "the account's key maps no deployment to gpt-4.1"
    [seen] = await mock.requests()
    assert seen["path"] == "/v1/chat/completions"
    # Alone, it is the request's 409 provider_not_connected, Azure never called.
    events = await run(executor(client, vault, mock), GPT_41)
    assert (http(events[-1].error).status, events[-1].error.code) == (409, "provider_not_connected")
    assert len(await mock.requests()) == 1


async def test_a_deployment_the_resource_lacks_is_not_connected_and_the_walk_goes_on(
    client: aiohttp.ClientSession, engine: Engine, mock: Mock
) -> None:
    vault = KeyVault(engine, parse_kek(new_kek()))
    vault.create_tables()
    fields = {"api_key": API_KEY, "endpoint": mock.running.url + "/azure", "deployments": {"gpt-4.1": "missing-41"}}
    vault.put("acct", "azure", orjson.dumps(fields).decode(), masked="…abcd")
    vault.put("acct", "openai", "sk-openai-0123456789abcdef")
    events = await run(executor(client, vault, mock), GPT_41, OPENAI)
    assert attempts(events) == [("azure", "gpt-4.1", "provider_not_connected"), ("openai", "gpt-4.1", "ok")]
    assert events[0].attempt.detail.startswith("HTTP 404: The API deployment for this resource does not exist")
    assert [r["path"] for r in await mock.requests()] == [
        "/azure/openai/deployments/missing-41/chat/completions",
        "/v1/chat/completions",
    ]


async def test_the_api_version_is_the_operators(client: aiohttp.ClientSession, vault: KeyVault, mock: Mock) -> None:
    await run(executor(client, vault, mock, api_version="2025-04-01-preview"), GPT_4O)
    [seen] = await mock.requests()
    assert parse_qs(seen["query"]) == {"api-version": ["2025-04-01-preview"]}


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_a_prompt_the_content_filter_refuses_is_openais_400_content_filter(
    client: aiohttp.ClientSession, vault: KeyVault, mock: Mock, stream: bool
) -> None:
    messages = [{"role": "user", "content": f"Tell me {FILTER_ME}"}]
    events = await run(executor(client, vault, mock), GPT_4O, OPENAI, stream=stream, messages=messages)
    assert attempts(events) == [("azure", "gpt-4o", "bad_request")]
    error = events[-1].error
    assert (http(error).status, http(error).type, error.code, error.param) == (
        400,
        "invalid_request_error",
        "content_filter",
        "prompt",
    )
    assert "content management policy" in error.message
    assert "ResponsibleAIPolicyViolation" not in str(events) and "innererror" not in str(events)


def test_an_answer_the_filter_cut_is_openais_content_filter_finish() -> None:
    azure_answer = {
        "id": "chatcmpl-az",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER_REPORT}],
        "choices": [
            {
                "index": 0,
                "finish_reason": "content_filter",
                "message": {"role": "assistant"},
                "content_filter_results": {**FILTER_REPORT, "violence": {"filtered": True, "severity": "medium"}},
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9},
    }
    data, usage = Azure().parse_completion(orjson.dumps(azure_answer), "chatcmpl-x", "gpt-4o")
    answer = orjson.loads(data)
    assert "prompt_filter_results" not in answer
    assert answer["choices"] == [
        {"index": 0, "finish_reason": "content_filter", "message": {"role": "assistant", "content": None}}
    ]
    assert (answer["id"], answer["model"], usage and usage.prompt_tokens) == ("chatcmpl-x", "gpt-4o", 9)


def test_a_streamed_chunk_the_filter_cut_is_openais_content_filter_finish() -> None:
    translator = Azure().stream_translator("chatcmpl-x", "gpt-4o")
    prompt_report = {"choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    first = {"id": "", "object": "", "created": 0, "model": "", **prompt_report}
    assert translator.feed(SseEvent(orjson.dumps(first))) == []
    cut = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "delta": {}, "finish_reason": "content_filter", "content_filter_results": FILTER_REPORT}
        ],
    }
    [chunk] = translator.feed(SseEvent(orjson.dumps(cut)))
    assert orjson.loads(chunk)["choices"] == [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]
    assert translator.complete


async def test_the_operators_proxy_carries_the_call_to_an_accounts_endpoint(
    client: aiohttp.ClientSession, vault: KeyVault, mock: Mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    events = await run(executor(client, vault, mock), GPT_4O)
    # The proxy (nothing listens there) is what the executor tried, not the endpoint.
    assert attempts(events) == [("azure", "gpt-4o", "connect_error")]
    assert await mock.requests() == []
