"""The operator's own vendors (STEPBLEND_VENDORS_FILE): loaded beside the packaged
table, always operator-only, called like any OpenAI-compatible vendor — here an
Ollama-shaped one, the mock's `ollama` flavour.

Why a mock and not Ollama or vLLM themselves: the `ollama` package on PyPI is only
the Python client of an Ollama server (a Go binary, not installed here), and the
`vllm` package needs a CUDA GPU (or a CPU build from source) and model weights; this
machine has two CPU cores, no GPU and no weights. Neither can serve a model here, so
the mock speaks Ollama's OpenAI-compatible API (`/v1/chat/completions`, ids like
`llama3.2:3b`, `fp_ollama`, a 404 for a model not pulled) in their place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import openai
import orjson
import pytest

from services.common import grpcio
from services.common.config import Settings
from services.common.vendors_file import VendorsFileError, operator_vendor_names
from services.providers.executor import Executor
from services.providers.main import serve
from services.providers.settings import ProvidersSettings
from services.providers.timeouts import Timeouts
from services.providers.upstream import make_client
from services.providers.vault import new_kek
from services.providers.vendors import load_vendors
from stepblend.v1 import providers_pb2, providers_pb2_grpc
from tests.providers.conftest import MemoryKeys, Mock, candidate
from tests.support.procs import NatsServer

TIMEOUTS = Timeouts(connect=2.0, read=2.0, total=20.0, first_token=2.0)
TOKEN = "operator-vendors-test-token"


def vendors_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vendors.toml"
    path.write_text(text)
    return path


def ollama(base_url: str) -> str:
    return f'[providers.ollama]\nwire_format = "openai_compatible"\nbase_url = "{base_url}"\n'


def test_the_files_vendor_joins_the_packaged_ones_operator_only(tmp_path: Path) -> None:
    text = ollama("http://127.0.0.1:11434/v1/") + '[providers.vllm]\nwire_format = "openai_compatible"\n'
    text += 'base_url = "http://gpu-box:8000/v1"\noperator_only = true\n'
    vendors = load_vendors(operator_file=vendors_file(tmp_path, text))
    assert vendors["ollama"].url("/chat/completions") == "http://127.0.0.1:11434/v1/chat/completions"
    assert vendors["ollama"].operator_only and vendors["ollama"].configured
    assert vendors["vllm"].operator_only and vendors["vllm"].wire_format == "openai_compatible"
    assert set(load_vendors()) | {"ollama", "vllm"} == set(vendors)
    assert not vendors["openai"].operator_only


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (ollama("https://x").replace("ollama", "openai", 1), "'openai': the name is a packaged provider's"),
        (ollama("https://x").replace("ollama", "local", 1), "'local': the name is a packaged provider's"),
        (ollama("https://x").replace("openai_compatible", "anthropic"), 'wire_format must be "openai_compatible"'),
        ('[providers.ollama]\nwire_format = "openai_compatible"\n', "base_url is required"),
        (ollama("ftp://x"), "base_url is required"),
        (ollama("https://x") + "operator_only = false\n", "an operator's vendor is operator_only"),
        (ollama("https://x") + "price = 0\n", "unknown keys"),
        (ollama("https://x") + "quirks = { teleports = true }\n", "unknown quirks"),
        (ollama("https://x").replace("ollama", "Ollama-1", 1), "lowercase"),
        ('[vendors.ollama]\nwire_format = "openai_compatible"\n', r"\[providers.<name>\] tables only"),
        ("[providers", "not valid TOML"),
    ],
)
def test_a_bad_vendors_file_stops_the_service_naming_it(tmp_path: Path, text: str, error: str) -> None:
    path = vendors_file(tmp_path, text)
    with pytest.raises(ValueError, match=error) as raised:
        load_vendors(operator_file=path)
    assert f"STEPBLEND_VENDORS_FILE {path}" in str(raised.value)


def test_a_missing_file_is_an_error_not_an_empty_table(tmp_path: Path) -> None:
    with pytest.raises(VendorsFileError, match="cannot read"):
        operator_vendor_names(tmp_path / "absent.toml")


def test_the_router_reads_the_same_names(tmp_path: Path) -> None:
    path = vendors_file(tmp_path, ollama("http://127.0.0.1:11434/v1"))
    assert operator_vendor_names(path) == {"ollama"}
    with pytest.raises(VendorsFileError, match="packaged provider's"):
        operator_vendor_names(path, taken={"ollama"})


async def test_the_ollama_flavour_speaks_as_ollama_does(mock: Mock) -> None:
    """The OpenAI SDK, as Ollama's docs use it against http://localhost:11434/v1."""
    messages: list[dict[str, str]] = [{"role": "user", "content": "Hi"}]
    sdk = openai.AsyncOpenAI(base_url=f"{mock.running.url}/ollama/v1", api_key="ollama", max_retries=0)
    async with sdk:
        answer = await sdk.chat.completions.create(model="llama3.2:3b", messages=messages)  # type: ignore[arg-type]
        stream = await sdk.chat.completions.create(model="llama3.2:3b", messages=messages, stream=True)  # type: ignore[arg-type]
        chunks = [chunk async for chunk in stream]
        with pytest.raises(openai.NotFoundError) as missing:
            await sdk.chat.completions.create(model="llama3.1:405b", messages=messages)  # type: ignore[arg-type]
    assert answer.model == "llama3.2:3b" and answer.system_fingerprint == "fp_ollama"
    assert answer.choices[0].message.content == "Hello! You said: Hi"
    assert {chunk.system_fingerprint for chunk in chunks} == {"fp_ollama"}
    assert missing.value.status_code == 404
    assert missing.value.message.endswith('model "llama3.1:405b" not found, try pulling it first')


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client(TIMEOUTS) as shared:
        yield shared


async def test_the_executor_calls_the_operators_vendor(
    mock: Mock, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    vendors = load_vendors(operator_file=vendors_file(tmp_path, ollama(f"{mock.running.url}/ollama/v1")))
    executor = Executor(client, MemoryKeys({"ollama": "no-key"}), vendors, TIMEOUTS)

    async def run(model: str) -> list[providers_pb2.ExecuteEvent]:
        request = providers_pb2.ExecuteRequest(
            request_id="operator-vendor",
            account_id="acct",
            candidates=[candidate("ollama", model)],
            body=orjson.dumps({"model": model, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        return [event async for batch in executor.execute(request) for event in batch]

    served = await run("llama3.2:3b")
    completion = orjson.loads(next(e.completion for e in served if e.HasField("completion")))
    assert completion["model"] == "llama3.2:3b" and completion["system_fingerprint"] == "fp_ollama"
    # A model the server never pulled: Ollama's 404, the request's own fault.
    missing = await run("llama3.1:405b")
    assert [e.attempt.outcome for e in missing if e.HasField("attempt")] == ["bad_request"]
    assert "not found, try pulling it first" in missing[-1].error.message
    seen = await mock.requests()
    assert [(r["path"], r["body"]["model"], r["headers"]["authorization"]) for r in seen] == [
        ("/ollama/v1/chat/completions", "llama3.2:3b", "Bearer no-key"),
        ("/ollama/v1/chat/completions", "llama3.1:405b", "Bearer no-key"),
    ]


async def test_only_the_operator_connects_an_account_to_it(nats_server: NatsServer, mock: Mock, tmp_path: Path) -> None:
    """The service started with the file: an account's own Put is refused, the
    operator's PutOperatorKey connects it, and Connected then reports it."""
    path = vendors_file(tmp_path, ollama(f"{mock.running.url}/ollama/v1"))
    settings = Settings.from_env().model_copy(
        update=dict(
            data_dir=tmp_path,
            nats_url=nats_server.url,
            internal_token=TOKEN,
            database_url=f"sqlite:///{tmp_path}/providers.db",
            key_encryption_key=new_kek(),
            host="127.0.0.1",
            port=0,
        )
    )
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(settings, ProvidersSettings(vendors_file=str(path)), timeouts=TIMEOUTS, on_ready=ready.set_result)
    )
    try:
        done, _ = await asyncio.wait([ready, task], timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        async with grpcio.channel(f"127.0.0.1:{ready.result()}", TOKEN) as channel:
            keys = providers_pb2_grpc.KeysStub(channel)
            put = providers_pb2.PutKeyRequest(account_id="acct-ollama", provider="ollama", api_key="no-key")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await keys.Put(put)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            await keys.PutOperatorKey(put)
            connected = await keys.Connected(providers_pb2.ConnectedRequest(account_id="acct-ollama"))
            other = await keys.Connected(providers_pb2.ConnectedRequest(account_id="acct-other"))
        assert "ollama" in connected.providers and "ollama" not in other.providers
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
