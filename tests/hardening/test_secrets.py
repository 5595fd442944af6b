"""Secrets stay in (issue 9, item 5).

An end-to-end run — keys connected through the CLI's path and over HTTP, chat
completions streamed and not on every mocked provider, the Routing API, the account
pages, and providers whose errors echo the key back (401, 400, 429, 500, and an
error event mid-stream) — then a scan for every stored provider key, whole or its
secret middle, in: every response (status, headers, body), every log line of every
service, every span (exported to the logs with OTEL_TRACES_EXPORTER=console), every
NATS message (a subscriber on `>` for the whole run) and every message kept in the
USAGE and CHANGES streams, and the providers' database (keys are encrypted at rest).

And no SSRF: nothing in a request — body fields named like a base URL, headers, a
model id that is a URL — sends a provider call anywhere but the operator's
configured address; a second server standing by as the attacker's sees nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import nats
import pytest

from services.common.events import CHANGES_STREAM, KEYS_CHANGED, USAGE_STREAM, KeysChanged
from tests.hardening.stack import PROVIDERS, Account, Stack, running
from tests.support.procs import free_port, wait_port
from tests.support.waiting import wait_until

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-3-5-haiku-20241022",
    "groq": "groq:llama-3.1-8b-instant",
    "deepseek": "deepseek:deepseek-chat",
    "mistral": "mistral:mistral-small-latest",
    "together": "together:meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "xai": "xai:grok-3-mini",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(
        Path(tmp_path_factory.mktemp("secrets")),
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="none",
        OTEL_BSP_SCHEDULE_DELAY="100",
    ) as system:
        yield system


class NatsTap:
    """Every message on the system's NATS (`>`) while it runs, from its own thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[tuple[str, bytes, dict[str, str]]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        nc = await nats.connect(self.url)

        async def keep(msg: Any) -> None:
            self.messages.append((msg.subject, msg.data, dict(msg.headers or {})))

        await nc.subscribe(">", cb=keep)
        await nc.flush()
        self._ready.set()
        await asyncio.to_thread(self._stop.wait)  # a threading.Event, set from the test thread
        await nc.drain()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


async def _stream_contents(url: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """Every message kept in the USAGE and CHANGES streams."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    kept = []
    for stream in (USAGE_STREAM, CHANGES_STREAM):
        info = await js.stream_info(stream)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            kept.append((msg.subject or "", msg.data or b"", dict(msg.headers or {})))
    await nc.close()
    return kept


def _everything_out(stack: Stack, tap: NatsTap, chat_ids: list[str], last_trace: str, change: KeysChanged) -> bool:
    """Whether everything the run makes is there to scan: each chat completion's usage
    event seen on NATS and settled by billing and folded by the router (their spans
    exported: spans are exported in the order they end, so each service's log lines
    before them are written too), the last request's spans exported by the gateway
    and the providers, and the key change it made published."""
    seen = list(tap.messages)
    published = {json.loads(data)["request_id"] for subject, data, _ in seen if subject.startswith("usage.v1.")}
    if not published >= set(chat_ids):
        return False
    logs = stack.logs()
    for service in ("billing", "router"):
        if not all(f'"messaging.message.id": "{rid}"' in logs[f"{service}.log"] for rid in chat_ids):
            return False
    if not all(f'"trace_id": "0x{last_trace}"' in logs[f"{service}.log"] for service in ("gateway", "providers")):
        return False
    return any(subject == KEYS_CHANGED and KeysChanged.model_validate_json(data) == change for subject, data, _ in seen)


def _connect_over_http(stack: Stack, client: httpx.Client) -> Account:
    email = f"http-{uuid.uuid4().hex[:10]}@example.com"
    signup = client.post(f"{stack.base_url}/auth/signup", json={"email": email, "password": "correct horse battery"})
    assert signup.status_code == 201, signup.text
    token = signup.json()["token"]
    keys = {p: f"sk-{p}-{uuid.uuid4().hex}{uuid.uuid4().hex}" for p in PROVIDERS}
    for provider, key in keys.items():
        put = client.put(
            f"{stack.base_url}/account/keys/{provider}",
            json={"api_key": key},
            headers={"authorization": f"Bearer {token}"},
        )
        assert put.status_code == 200, put.text
    return Account(email, signup.json()["account_id"], token, keys)


def test_no_provider_key_in_any_response_log_span_or_event(stack: Stack) -> None:
    answers: list[bytes] = []
    chat_ids: list[str] = []  # each chat completion's request id: each ends in a usage event

    def keep(response: httpx.Response) -> httpx.Response:
        head = f"{response.status_code}\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        answers.append(head.encode() + b"\n\n" + response.read())
        if response.request.url.path.endswith("/chat/completions"):
            chat_ids.append(response.headers["x-request-id"])
        return response

    with NatsTap(stack.addresses["nats"]) as tap, httpx.Client(timeout=30) as client:
        by_cli = stack.account()
        by_http = _connect_over_http(stack, client)
        accounts = [by_cli, by_http]
        for account in accounts:
            for provider, model in MODELS.items():
                for stream in (False, True):
                    body: dict[str, Any] = {
                        "model": model,
                        "messages": [{"role": "user", "content": f"hello {provider}"}],
                        "stream": stream,
                    }
                    if stream:
                        body["stream_options"] = {"include_usage": True}
                    response = keep(
                        client.post(f"{stack.base_url}/chat/completions", json=body, headers=account.headers)
                    )
                    assert response.status_code == 200, (provider, response.text[:300])
            for path in ("/models", "/account", "/account/keys", "/account/usage"):
                keep(client.get(f"{stack.base_url}{path}", headers=account.headers))
            keep(
                client.post(
                    f"{stack.base_url}/route",
                    json={"model": "balanced", "messages": [{"role": "user", "content": "hi"}]},
                    headers=account.headers,
                )
            )
            keep(
                client.post(
                    f"{stack.base_url}/auth/login", json={"email": account.email, "password": "correct horse battery"}
                )
            )

        # Providers that answer with the caller's key in their error messages.
        victim = by_http
        for provider, upstream, model in (
            ("openai", "gpt-4o", "openai:gpt-4o"),
            ("anthropic", "claude-3-5-sonnet-20241022", "anthropic:claude-3-5-sonnet-20241022"),
            ("groq", "llama-3.3-70b-versatile", "groq:llama-3.3-70b-versatile"),
        ):
            key = victim.keys[provider]
            for status in (401, 400, 403, 429, 500):
                stack.mock(
                    "POST",
                    "/_mock/behaviour",
                    {"model": upstream, "status": status, "message": f"Incorrect API key provided: {key}; key={key}"},
                )
                for stream in (False, True):
                    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
                    response = keep(
                        client.post(f"{stack.base_url}/chat/completions", json=body, headers=victim.headers)
                    )
                    assert response.status_code >= 400
            stack.mock(
                "POST",
                "/_mock/behaviour",
                {
                    "model": upstream,
                    "break_after_chunks": 2,
                    "stream_error": "server_error",
                    "message": f"upstream failed for key {key}",
                },
            )
            body = {"model": model, "messages": [{"role": "user", "content": "one two three four"}], "stream": True}
            keep(client.post(f"{stack.base_url}/chat/completions", json=body, headers=victim.headers))
            stack.mock("DELETE", "/_mock/behaviour")
        # Replace and delete a key: the changes are events too.
        keep(
            client.put(
                f"{stack.base_url}/account/keys/mistral",
                json={"api_key": victim.keys["mistral"] + "x"},
                headers=victim.headers,
            )
        )
        victim.keys["mistral-replaced"] = victim.keys["mistral"] + "x"
        # The last request, in a trace of the test's own: its spans mark how far each service's export got.
        last_trace = uuid.uuid4().hex
        traceparent = f"00-{last_trace}-{uuid.uuid4().hex[:16]}-01"
        keep(
            client.delete(f"{stack.base_url}/account/keys/xai", headers={**victim.headers, "traceparent": traceparent})
        )
        deleted = KeysChanged(account_id=victim.account_id, provider="xai")
        wait_until(
            lambda: _everything_out(stack, tap, chat_ids, last_trace, deleted),
            timeout=60,
            interval=0.2,
            what="usage events settled, spans exported, the key change published",
        )
    kept = asyncio.run(_stream_contents(stack.addresses["nats"]))
    # The providers did echo the keys back, and what reached the client was scrubbed.
    assert any(b"Incorrect API key provided: [key]" in answer for answer in answers)

    logs = stack.logs()
    events = [
        subject.encode() + b" " + repr(headers).encode() + b" " + data for subject, data, headers in tap.messages + kept
    ]
    database = (stack.root / "providers.db").read_bytes()
    spans = sum(text.count('"span_id"') for text in logs.values())
    usage_events = sum(1 for subject, _, _ in kept if subject.startswith("usage.v1."))
    print(
        f"\nscanned {len(answers)} responses, {sum(t.count(chr(10)) for t in logs.values())} log lines "
        f"({spans} spans), {len(tap.messages)} NATS messages seen live, {len(kept)} kept in streams "
        f"({usage_events} usage events), for {sum(len(a.keys) for a in accounts)} keys"
    )
    assert usage_events >= 2 * len(MODELS) * 2 and len(tap.messages) >= usage_events
    assert spans > 0, "no span was exported: the span scan would prove nothing"
    for account in accounts:
        for provider, key in account.keys.items():
            secret = key[-40:-4]  # the masked form may show the last four characters, never this
            for i, answer in enumerate(answers):
                assert secret not in answer.decode(errors="replace"), (
                    f"{provider} key in response {i}: {answer[:500]!r}"
                )
            for name, text in logs.items():
                assert secret not in text, f"{provider} key in {name}"
            for event in events:
                assert secret.encode() not in event, f"{provider} key in a NATS message: {event[:300]!r}"
            assert secret.encode() not in database, f"{provider} key stored in the clear"


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second mock provider, standing in for an address an attacker would like called."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stepblend.mockprovider", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def test_a_request_cannot_choose_where_the_provider_call_goes(stack: Stack, attacker: str) -> None:
    account = stack.account()
    stack.mock("DELETE", "/_mock/requests")
    evil = f"{attacker}/v1"
    fields = {
        "base_url": evil,
        "api_base": evil,
        "baseURL": evil,
        "endpoint": f"{evil}/chat/completions",
        "url": f"{evil}/chat/completions",
        "provider_url": evil,
        "stepblend_base_url": evil,
        "stepblend_provider": {"base_url": evil},
        "extra_headers": {"host": attacker.removeprefix("http://"), "x-evil-marker": "1"},
        "headers": {"host": attacker.removeprefix("http://")},
        "extra_body": {"base_url": evil},
        "api_key": "sk-attacker-000000000000",
    }
    headers = {
        **account.headers,
        "x-evil-marker": "1",
        "x-forwarded-host": attacker.removeprefix("http://"),
        "x-stepblend-base-url": evil,
        "openai-base-url": evil,
        "x-api-key": "sk-attacker-000000000000",
        "forwarded": f"host={attacker.removeprefix('http://')}",
    }
    served = 0
    with httpx.Client(timeout=30) as client:
        for model in (
            "openai:gpt-4o-mini",
            "anthropic:claude-3-5-haiku-20241022",
            "groq:llama-3.1-8b-instant",
            "lowest-cost",
        ):
            for stream in (False, True):
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, **fields}
                response = client.post(f"{stack.base_url}/chat/completions", json=body, headers=headers)
                assert response.status_code in (200, 400), response.text[:300]
                served += response.status_code == 200
        for model in (evil, f"openai:{evil}", f"{attacker.removeprefix('http://')}/v1", "openai:../../etc"):
            response = client.post(
                f"{stack.base_url}/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                headers=headers,
            )
            assert response.status_code in (400, 404), response.text[:300]
        for provider in (evil, "openai@evil", "..%2F..%2Fadmin"):
            response = client.put(
                f"{stack.base_url}/account/keys/{provider}",
                json={"api_key": "sk-x-0000000000"},
                headers=account.headers,
            )
            assert response.status_code in (400, 404), response.text[:300]
    assert httpx.get(f"{attacker}/_mock/requests", timeout=10).json() == [], (
        "a provider call went to the attacker's address"
    )
    seen = stack.mock("GET", "/_mock/requests")
    assert len(seen) >= served > 0
    for request in seen:
        assert request["path"] in ("/v1/messages", *(f"/{p}/v1/chat/completions" for p in PROVIDERS)), request["path"]
        sent_headers = {k.lower() for k in request["headers"]}
        assert not sent_headers & {
            "x-evil-marker",
            "x-forwarded-host",
            "x-stepblend-base-url",
            "openai-base-url",
            "forwarded",
        }
        auth = request["headers"].get("authorization") or request["headers"].get("x-api-key", "")
        assert "attacker" not in auth and auth.endswith(tuple(account.keys.values()))
