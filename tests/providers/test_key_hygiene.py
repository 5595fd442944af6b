"""A provider key never leaves the vault except toward its provider: not in the
service's JSON log lines, not in any Attempt or Error event, not in the masked
listing — even when a provider quotes the key back in its error messages."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from services.common.logs import JsonFormatter
from stepblend.v1 import providers_pb2
from tests.providers.conftest import REJECTED_KEY, Mock, Service, candidate, key_for

OPENAI = candidate("openai", "gpt-4o-mini")
GROQ = candidate("groq", "llama-3.1-8b-instant")
CLAUDE = candidate("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log record of the process (the service runs in it), as the JSON lines
    the service writes, at DEBUG."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("providers"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


async def test_keys_never_appear_in_logs_or_events(
    service: Service, mock: Mock, account: str, log_lines: io.StringIO
) -> None:
    keys = {provider: key_for(provider, account) for provider in ("openai", "groq", "anthropic")}
    for provider, key in keys.items():
        put = await service.keys.Put(providers_pb2.PutKeyRequest(account_id=account, provider=provider, api_key=key))
        assert key not in str(put)
    events: list[providers_pb2.ExecuteEvent] = []

    async def run(*candidates: Any, stream: bool = False) -> None:
        got = await service.execute(
            request_id="leak", account_id=account, candidates=list(candidates), body=body(stream=stream), stream=stream
        )
        events.extend(got)

    # Providers that quote the key back, in every kind of failure.
    quoting = "Your key {} is not allowed to do this"
    for status in (400, 429, 500, 503):
        await mock.behave(model="gpt-4o-mini", status=status, message=quoting.format(keys["openai"]))
        await mock.behave(model="claude-3-5-haiku-20241022", status=529, message=quoting.format(keys["anthropic"]))
        await run(OPENAI, CLAUDE, GROQ)
        await run(OPENAI, CLAUDE, GROQ, stream=True)
    await mock.reset()
    await mock.behave(model="gpt-4o-mini", stream_error="server_error", message=quoting.format(keys["openai"]))
    await mock.behave(
        model="claude-3-5-haiku-20241022", stream_error="overloaded_error", message=quoting.format(keys["anthropic"])
    )
    await run(OPENAI, CLAUDE, GROQ, stream=True)
    # A key the provider rejects: OpenAI's 401 quotes a masked form of it.
    await mock.reset()
    await service.keys.Put(providers_pb2.PutKeyRequest(account_id=account, provider="openai", api_key=REJECTED_KEY))
    await run(OPENAI, GROQ)
    await run(OPENAI)

    failures = [e for e in events if e.HasField("error") or (e.HasField("attempt") and e.attempt.outcome != "ok")]
    assert len(failures) > 20, "the scenarios above must fail in many ways"
    assert any(e.HasField("attempt") and "not allowed" in e.attempt.detail for e in failures), "details are kept"
    text = "\n".join(str(e) for e in failures)
    lines = log_lines.getvalue()
    assert "failed" in lines, "the attempts were logged"
    for key in [*keys.values(), REJECTED_KEY]:
        assert key not in text
        assert key not in lines
    # A rejected key's error says nothing of it, not even its masked tail.
    rejected = [e.error.message for e in failures if e.HasField("error") and e.error.code == "provider_key_invalid"]
    assert rejected and all(REJECTED_KEY[-4:] not in message for message in rejected)

    listed = await service.keys.List(providers_pb2.ListKeysRequest(account_id=account))
    assert sorted(k.provider for k in listed.keys) == ["anthropic", "groq", "openai"]
    for key in [*keys.values(), REJECTED_KEY]:
        assert key not in str(listed)
