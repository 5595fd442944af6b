"""AWS Bedrock through the running system (SPEC.md §11): an account connects its AWS
credentials over HTTP, and an OpenAI client reaches Bedrock's Converse API (the mock
speaks Converse and ConverseStream's event stream, and recomputes each request's SigV4
signature), answers, streams and calls tools in OpenAI's shapes, billed at the row's
prices. A system of its own: STEPBLEND_BEDROCK_BASE_URL points at a mock started here."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from stepblend.mockprovider import RunningMockProvider, start_in_thread
from stepblend.mockprovider.sigv4 import EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY
from tests.support.system import System, running_system

KEY = {"access_key_id": EXAMPLE_ACCESS_KEY_ID, "secret_access_key": EXAMPLE_SECRET_ACCESS_KEY, "region": "us-west-2"}


@pytest.fixture(scope="module")
def bedrock() -> Iterator[RunningMockProvider]:
    running = start_in_thread()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, bedrock: RunningMockProvider) -> Iterator[System]:
    data_dir = Path(tmp_path_factory.mktemp("bedrock"))
    with running_system(data_dir, STEPBLEND_BEDROCK_BASE_URL=f"{bedrock.url}/bedrock") as system:
        yield system


@pytest.fixture(scope="module")
def token(system: System) -> str:
    token = system.cli("account", "create", f"bedrock-{uuid.uuid4().hex[:8]}@example.com")
    put = httpx.put(f"{system.base_url}/account/keys/bedrock", headers={"authorization": f"Bearer {token}"}, json=KEY)
    assert put.status_code == 200, put.text
    assert put.json() == {
        "provider": "bedrock",
        "masked_key": "…MPLE",
        "fields": {"access_key_id": "…MPLE", "secret_access_key": "…EKEY", "region": "us-west-2"},
    }
    return token


def sent(bedrock: RunningMockProvider) -> list[dict[str, object]]:
    requests: list[dict[str, object]] = httpx.get(f"{bedrock.url}/_mock/requests").json()
    return requests


def test_a_bedrock_model_answers_streams_and_calls_tools_in_openais_shape(
    system: System, bedrock: RunningMockProvider, token: str
) -> None:
    client = openai.OpenAI(api_key=token, base_url=system.base_url, max_retries=0)
    answer = client.chat.completions.create(
        model="nova-pro", messages=[{"role": "user", "content": "hello bedrock"}], max_tokens=64
    )
    assert answer.choices[0].message.content == "Hello! You said: hello bedrock"
    report = answer.model_extra["stepblend"]  # type: ignore[index]
    assert (report["provider"], report["routed_model"]) == ("bedrock", "nova-pro")
    assert report["actual_cost_usd"] > 0
    [call] = sent(bedrock)
    assert call["path"] == "/bedrock/model/amazon.nova-pro-v1:0/converse"
    assert "/us-west-2/bedrock/aws4_request" in call["headers"]["authorization"]  # type: ignore[index]

    stream = client.chat.completions.create(
        model="bedrock:llama-3.3-70b",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello! You said: stream please"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    called = client.chat.completions.create(
        model="nova-lite",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=tools,  # type: ignore[arg-type]
    )
    assert called.choices[0].finish_reason == "tool_calls"
    [tool_call] = called.choices[0].message.tool_calls or []
    assert tool_call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]


def test_the_operator_sets_aws_credentials_from_a_json_object_on_stdin(system: System) -> None:
    email = f"bedrock-{uuid.uuid4().hex[:8]}@example.com"
    system.cli("account", "create", email)
    set_ = subprocess.run(
        [sys.executable, "-m", "stepblend", "keys", "set", email, "bedrock", "-"],
        env=system.env,
        input=json.dumps(KEY, indent=2) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert set_.returncode == 0, set_.stderr
    assert EXAMPLE_SECRET_ACCESS_KEY not in set_.stdout
    assert json.loads(set_.stdout) == {"access_key_id": "…MPLE", "secret_access_key": "…EKEY", "region": "us-west-2"}


def test_an_account_cannot_point_its_bedrock_key_at_another_host(system: System) -> None:
    token = system.cli("account", "create", f"bedrock-{uuid.uuid4().hex[:8]}@example.com")
    for region in ("us-east-1.evil.example", "169.254.169.254", "localhost"):
        refused = httpx.put(
            f"{system.base_url}/account/keys/bedrock",
            headers={"authorization": f"Bearer {token}"},
            json={**KEY, "region": region},
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "region"
        assert EXAMPLE_SECRET_ACCESS_KEY not in refused.text
