"""`stepblend up --demo`: the demo provider is its own vendor, connected for the demo
account only. Another account's real OpenAI key keeps going to OpenAI (here the
shared mock's OpenAI flavour, standing in for api.openai.com), and no account can
connect itself to the demo provider (or to `local`, the operator's own server)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.system import System, running_system

READY_LINE = "Ctrl-C stops everything."


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, list[str]]]:
    with running_system(Path(tmp_path_factory.mktemp("demo")), "--demo") as system:
        assert system.up is not None and system.up.stdout is not None
        lines: list[str] = []
        while READY_LINE not in lines:
            line = system.up.stdout.readline().decode()
            assert line, "stepblend up --demo ended before it was ready:\n" + "".join(lines)
            lines.append(line.strip())
        yield system, lines


def line_index(lines: list[str], prefix: str) -> int:
    found = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert found, f"no line starts with {prefix!r} in {lines}"
    return found[0]


def after(lines: list[str], prefix: str) -> str:
    """What follows `prefix` on its line."""
    return lines[line_index(lines, prefix)].removeprefix(prefix).strip()


def chat(system: System, token: str, model: str = "gpt-4o-mini") -> httpx.Response:
    return httpx.post(
        f"{system.base_url}/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": model, "messages": [{"role": "user", "content": "Hello!"}]},
        timeout=30,
    )


def openai_requests(system: System, key: str) -> list[dict[str, object]]:
    return [
        r
        for r in system.mock_requests()
        if r["path"] == "/openai/v1/chat/completions"
        and isinstance(r["headers"], dict)
        and r["headers"].get("authorization") == f"Bearer {key}"
    ]


def test_the_demo_account_is_answered_by_the_demo_provider(demo: tuple[System, list[str]]) -> None:
    system, lines = demo
    token = lines[line_index(lines, "Demo account token") + 1]
    answer = chat(system, token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["stepblend"]["provider"] == "demo"
    assert answer.json()["stepblend"]["routed_model"] == "gpt-4o-mini"
    # A strategy ranks the demo's models as it would real ones.
    cheapest = chat(system, token, "lowest-cost")
    assert cheapest.status_code == 200, cheapest.text
    assert cheapest.json()["stepblend"]["provider"] == "demo"
    # The demo provider answered both (services.json has its address); OpenAI none.
    services = json.loads((system.data_dir / "services.json").read_text())
    demo_mock = services["demo_provider"].removesuffix("/v1")
    seen = httpx.get(f"{demo_mock}/_mock/requests").json()
    assert [r["body"]["model"] for r in seen if r["path"] == "/v1/chat/completions"][-2:] == [
        "gpt-4o-mini",
        cheapest.json()["stepblend"]["routed_model"],
    ]
    assert not [r for r in system.mock_requests() if r["path"] == "/openai/v1/chat/completions"]


def test_the_demo_shows_anthropic_and_gemini_shaped_providers(demo: tuple[System, list[str]]) -> None:
    system, lines = demo
    token = lines[line_index(lines, "Demo account token") + 1]
    services = json.loads((system.data_dir / "services.json").read_text())
    demo_mock = services["demo_provider"].removesuffix("/v1")
    for model, provider, path in [
        ("claude-haiku-4-5-20251001", "demo_anthropic", "/v1/messages"),
        ("gemini-2.5-flash", "demo_gemini", "/v1beta/models/gemini-2.5-flash:generateContent"),
    ]:
        answer = chat(system, token, model)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stepblend"]["provider"] == provider
        assert answer.json()["choices"][0]["message"]["content"]
        # Translated to that provider's own wire format, at the demo's one mock.
        seen = httpx.get(f"{demo_mock}/_mock/requests").json()
        assert seen[-1]["path"] == path


def test_another_accounts_openai_key_still_goes_to_openai(demo: tuple[System, list[str]]) -> None:
    system, _ = demo
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    token = system.cli("account", "create", email)
    key = f"sk-openai-{uuid.uuid4().hex}"
    put = httpx.put(
        f"{system.base_url}/account/keys/openai", headers={"authorization": f"Bearer {token}"}, json={"api_key": key}
    )
    assert put.status_code == 200, put.text
    answer = chat(system, token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["stepblend"]["provider"] == "openai"
    assert len(openai_requests(system, key)) == 1


def test_no_account_connects_itself_to_the_demo_provider(demo: tuple[System, list[str]]) -> None:
    system, _ = demo
    token = system.cli("account", "create", f"user-{uuid.uuid4().hex[:12]}@example.com")
    # Nor to a self-hosted server the operator runs (`local`).
    for provider in ("demo", "local"):
        put = httpx.put(
            f"{system.base_url}/account/keys/{provider}",
            headers={"authorization": f"Bearer {token}"},
            json={"api_key": "sk-anything-0123456789"},
        )
        assert put.status_code == 403, put.text
        assert put.json()["error"]["code"] == "provider_operator_only"
    listed = httpx.get(f"{system.base_url}/account/keys", headers={"authorization": f"Bearer {token}"})
    assert listed.json() == {"object": "list", "data": []}
    # Without a connected provider the demo's models are not this account's either.
    refused = chat(system, token)
    assert refused.status_code == 409, refused.text


def test_the_demo_prints_the_console_and_its_sign_in(demo: tuple[System, list[str]]) -> None:
    system, lines = demo
    console = after(lines, "Console:")
    page = httpx.get(console)
    assert page.status_code == 200 and "<html" in page.text.lower()
    email, _, password = after(lines, "Console sign-in:").partition(" / ")
    login = httpx.post(f"{system.base_url}/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    assert any(line.startswith("Next: ") for line in lines)
