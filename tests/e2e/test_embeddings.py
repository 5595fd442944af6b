"""Embeddings through the running system (SPEC.md §9), with the real openai SDK and
LangChain: a named embedding model at its provider, floats or base64, `dimensions`
where the model takes it, refusals before any provider call, billed and recorded
like chat."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal

import httpx
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from tests.e2e.conftest import Account, System
from tests.support.waiting import wait_until


def _client(system: System, account: Account) -> openai.OpenAI:
    return openai.OpenAI(api_key=account.token, base_url=system.base_url, max_retries=0)


def _embed(system: System, account: Account, **body: object) -> httpx.Response:
    return httpx.post(
        f"{system.base_url}/embeddings", headers={"authorization": f"Bearer {account.token}"}, json=body, timeout=30
    )


def test_the_openai_sdk_embeds_in_floats_and_base64(system: System, account: Account) -> None:
    client = _client(system, account)
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"], encoding_format="float")
    assert [len(item.embedding) for item in floats.data] == [1536, 1536]
    assert floats.model == "text-embedding-3-small" and floats.usage.prompt_tokens == 4
    # The SDK's default asks for base64 and decodes it: the same vectors must come out.
    decoded = client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"])
    for ours, theirs in zip(decoded.data, floats.data, strict=True):
        assert ours.embedding == pytest.approx(theirs.embedding, rel=1e-6)
    raw = _embed(system, account, model="text-embedding-3-small", input="a cat", encoding_format="base64").json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert struct.unpack(f"<{len(packed) // 4}f", packed) == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert raw["stepblend"]["provider"] == "openai" and raw["stepblend"]["routed_model"] == "text-embedding-3-small"
    sent = [r for r in system.mock_requests() if r["path"].endswith("/embeddings")][-1]
    assert sent["body"]["model"] == "text-embedding-3-small" and "encoding_format" not in sent["body"]


def test_dimensions_where_the_model_takes_them_and_a_400_naming_them_elsewhere(
    system: System, account: Account
) -> None:
    short = _client(system, account).embeddings.create(model="text-embedding-3-large", input="x", dimensions=256)
    assert len(short.data[0].embedding) == 256
    refused = _embed(system, account, model="mistral-embed", input="x", dimensions=256)
    assert refused.status_code == 400
    assert (refused.json()["error"]["code"], refused.json()["error"]["param"]) == ("no_eligible_model", "dimensions")
    mistral = _embed(system, account, model="mistral-embed", input="x").json()
    assert len(mistral["data"][0]["embedding"]) == 1024 and mistral["stepblend"]["provider"] == "mistral"


def test_strategies_chat_models_and_long_inputs_are_refused_before_any_call(system: System, account: Account) -> None:
    before = len(system.mock_requests())
    strategy = _embed(system, account, model="lowest-cost", input="x")
    assert strategy.status_code == 400 and strategy.json()["error"]["code"] == "strategy_not_supported"
    chat = _embed(system, account, model="gpt-4o-mini", input="x")
    assert chat.status_code == 400 and "chat model" in chat.json()["error"]["message"]
    long = _embed(system, account, model="bge-base-en-v1.5", input="word " * 600)
    assert long.status_code == 400
    assert long.json()["error"]["param"] == "input" and "512 tokens per input" in long.json()["error"]["message"]
    empty = _embed(system, account, model="text-embedding-3-small", input=[])
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
    assert len(system.mock_requests()) == before
    as_chat = httpx.post(
        f"{system.base_url}/chat/completions",
        headers={"authorization": f"Bearer {account.token}"},
        json={"model": "text-embedding-3-small", "messages": [{"role": "user", "content": "x"}]},
    )
    assert as_chat.status_code == 400 and "/embeddings" in as_chat.json()["error"]["message"]


def test_langchain_embeds_documents_and_queries(system: System, account: Account) -> None:
    # check_embedding_ctx_length would fetch tiktoken's files from the internet to split
    # long texts; StepBlend refuses over-long inputs itself.
    embedder = OpenAIEmbeddings(
        model="text-embedding-3-small",
        api_key=account.token,  # type: ignore[arg-type]
        base_url=system.base_url,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    documents = embedder.embed_documents(["StepBlend routes", "models by price"])
    assert [len(vector) for vector in documents] == [1536, 1536]
    assert embedder.embed_query("StepBlend routes") == pytest.approx(documents[0], rel=1e-6)


def test_embeddings_are_billed_and_listed_like_chat(system: System, account: Account) -> None:
    answer = _embed(system, account, model="text-embedding-3-small", input="one two three four five").json()
    assert answer["usage"]["prompt_tokens"] == 5
    assert answer["stepblend"]["actual_cost_usd"] == pytest.approx(5 * 0.02 / 1_000_000)
    models = httpx.get(f"{system.base_url}/models", headers={"authorization": f"Bearer {account.token}"}).json()
    listed = {m["id"]: m for m in models["data"]}
    assert (listed["text-embedding-3-small"]["type"], listed["text-embedding-3-small"]["dimensions"]) == (
        "embedding",
        1536,
    )
    assert "type" not in listed["gpt-4o-mini"]

    def recorded() -> dict[str, object] | None:
        rows = httpx.get(
            f"{system.base_url}/account/usage", headers={"authorization": f"Bearer {account.token}"}
        ).json()["data"]
        return next((r for r in rows if r["dialect"] == "openai_embeddings"), None)

    row = wait_until(recorded, 20, "the embeddings request in the ledger")
    assert row["model"] == "text-embedding-3-small" and row["prompt_tokens"] == 5
    assert Decimal(str(row["cost_usd"])) == Decimal("0.0000001")


def test_gemini_embeds_natively_and_bills_its_estimate(system: System, account: Account) -> None:
    client = _client(system, account)
    answer = client.embeddings.create(model="gemini-embedding-001", input=["a cat", "a dog"], dimensions=128)
    assert [len(item.embedding) for item in answer.data] == [128, 128]
    report = answer.model_extra["stepblend"]  # type: ignore[index]
    assert (report["provider"], report["routed_model"]) == ("gemini", "gemini-embedding-001")
    # Gemini reports no token counts: the usage is the row's estimate, which errs high.
    assert answer.usage.prompt_tokens >= 4 and report["actual_cost_usd"] > 0
    sent = [r for r in system.mock_requests() if r["path"].endswith(":batchEmbedContents")][-1]
    assert sent["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent["headers"]["x-goog-api-key"] == account.keys["gemini"]
    assert [r["content"]["parts"][0]["text"] for r in sent["body"]["requests"]] == ["a cat", "a dog"]
    assert {r["outputDimensionality"] for r in sent["body"]["requests"]} == {128}
    tokens = _embed(system, account, model="gemini-embedding-001", input=[1, 2, 3])
    assert tokens.status_code == 400 and tokens.json()["error"]["param"] == "input"
