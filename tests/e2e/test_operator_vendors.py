"""An operator's own vendor (SPEC.md §11): a self-hosted Ollama named in
STEPBLEND_VENDORS_FILE, its model in STEPBLEND_CATALOG_FILE (extending the packaged
catalog), offered to one account with `stepblend vendor allow` and to no other.

The Ollama here is the mock's `ollama` flavour on a port of its own, speaking Ollama's
OpenAI-compatible API: neither Ollama nor vLLM can run on this machine. The `ollama`
package on PyPI is only a client of an Ollama server (a Go binary, absent here);
`vllm` needs a CUDA GPU (or a CPU build from source) and model weights, and this
machine has two CPU cores, no GPU and no weights.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepblend.mockprovider import RunningMockProvider, start_in_thread
from tests.support.system import System, running_system
from tests.support.waiting import wait_until

MODEL = "llama3.2:3b"
# The packaged catalog's llama3 tokenizer; a self-hosted model costs nothing per token.
CATALOG = f"""
[[models]]
id = "{MODEL}"
provider = "ollama"
upstream_model = "{MODEL}"
tokenizer = "llama3"
input_per_mtok = "0"
output_per_mtok = "0"
context_window = 131072
max_output_tokens = 8192
capabilities = {{ tools = false, vision = false, json_schema = false, streaming = true }}
quality = 0.4
ttft_ms_prior = 300
tokens_per_s_prior = 40
reliability_prior = 0.99
"""


@pytest.fixture(scope="module")
def ollama() -> Iterator[RunningMockProvider]:
    server = start_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def system(ollama: RunningMockProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    files = Path(tmp_path_factory.mktemp("operator-files"))
    vendors, catalog = files / "vendors.toml", files / "catalog.toml"
    vendors.write_text(f'[providers.ollama]\nwire_format = "openai_compatible"\nbase_url = "{ollama.url}/ollama/v1"\n')
    catalog.write_text(CATALOG)
    data_dir = Path(tmp_path_factory.mktemp("operator-vendors"))
    with running_system(data_dir, STEPBLEND_VENDORS_FILE=str(vendors), STEPBLEND_CATALOG_FILE=str(catalog)) as system:
        yield system


def account(system: System) -> tuple[str, str]:
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    return email, system.cli("account", "create", email)


def chat(system: System, token: str, model: str = MODEL) -> httpx.Response:
    return httpx.post(
        f"{system.base_url}/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": model, "messages": [{"role": "user", "content": "Hello!"}]},
        timeout=30,
    )


def seen_by_ollama(ollama: RunningMockProvider) -> list[dict[str, Any]]:
    return [r for r in ollama.app.requests if r["path"] == "/ollama/v1/chat/completions"]


def test_an_allowed_account_is_served_by_the_operators_ollama(system: System, ollama: RunningMockProvider) -> None:
    email, token = account(system)
    assert system.cli("vendor", "allow", email, "ollama") == f"ollama allowed for {email}"
    assert system.cli("vendor", "list", email) == "ollama"
    before = len(seen_by_ollama(ollama))
    for model in (MODEL, f"ollama:{MODEL}"):
        answer = chat(system, token, model)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["stepblend"]["provider"] == "ollama" and body["system_fingerprint"] == "fp_ollama"
        assert body["choices"][0]["message"]["content"] == "Hello! You said: Hello!"
    seen = seen_by_ollama(ollama)[before:]
    assert [r["body"]["model"] for r in seen] == [MODEL, MODEL]
    # No key was given: the placeholder goes as the bearer token, which Ollama ignores.
    assert {r["headers"]["authorization"] for r in seen} == {"Bearer none"}
    models = httpx.get(f"{system.base_url}/models", headers={"authorization": f"Bearer {token}"}).json()
    listed = {m["id"]: m["owned_by"] for m in models["data"]}
    # The packaged catalog is still there beside the operator's row.
    assert listed[MODEL] == "ollama" and "gpt-4o" in listed


def test_an_account_not_allowed_is_refused_and_ollama_never_called(system: System, ollama: RunningMockProvider) -> None:
    _email, token = account(system)
    before = len(seen_by_ollama(ollama))
    refused = chat(system, token)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "provider_not_connected"
    # Nor may it connect itself.
    put = httpx.put(
        f"{system.base_url}/account/keys/ollama",
        headers={"authorization": f"Bearer {token}"},
        json={"api_key": "sk-anything-0123456789"},
    )
    assert put.status_code == 403 and put.json()["error"]["code"] == "provider_operator_only"
    assert len(seen_by_ollama(ollama)) == before


def test_revoking_the_vendor_takes_it_away(system: System) -> None:
    email, token = account(system)
    system.cli("vendor", "allow", email, "ollama")
    assert chat(system, token).status_code == 200
    assert system.cli("vendor", "revoke", email, "ollama") == f"ollama revoked for {email}"
    assert system.cli("vendor", "list", email) == ""
    # The gateway drops its cached providers on the keys event it is sent.
    wait_until(lambda: chat(system, token).status_code == 409, what="the revoked vendor refused")


def test_the_cli_offers_operator_vendors_only(system: System) -> None:
    email, _token = account(system)
    with pytest.raises(RuntimeError, match="connected by the account itself"):
        system.cli("vendor", "allow", email, "openai")
    with pytest.raises(RuntimeError, match="unknown provider 'nope'"):
        system.cli("vendor", "allow", email, "nope")
    assert system.cli("vendor", "list", email) == ""
