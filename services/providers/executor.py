"""`Providers.Execute`: run one request on its ranked candidates with the account's keys.

This module is the service's only network I/O, through one injected, pooled
`httpx.AsyncClient`.

Events, in order, for one request (what the gateway must expect):

    Attempt(failed)*            one per candidate that failed before serving, as it ends
    then exactly one ending:
      Attempt(ok) chunk* [Usage] [Error]   stream; the ok Attempt comes before the first
                                           chunk; Error only if the stream broke after it
                                           started (chunks already sent stay sent)
      Attempt(ok) completion [Usage]       non-stream
      Attempt(bad_request) Error(400)      the request is refused: a parameter the model
                                           does not take, or the provider's 400/404/413/422
      Error                                every candidate failed (or there was none)

`Usage` is the provider's reported usage, when it reported one. Completion ids are
`chatcmpl-<request_id>`; `model` is the catalog id; `created` the request's.

Walking the candidates, per candidate:
- no key stored for its provider → `provider_not_connected`, next;
- connect error → `connect_error`; timeout (connect, idle read, or the total deadline)
  → `timeout`; 429 → `rate_limited`; 401/403 → `provider_key_invalid`; 5xx, other
  statuses, a broken or unreadable answer → `provider_error`: next candidate — for a
  stream only until its first chunk arrives, for a non-stream until the answer is whole;
- 400/404/413/422 → `bad_request` and a 400 `invalid_request_error` with the provider's
  message: the request itself is wrong, so no fallback.

When all fail, the error follows the last candidate actually tried: 429
`rate_limit_error` for `rate_limited`; 504 `timeout`; 502 `provider_key_invalid`;
otherwise 502 `provider_error` (one tried) or 503 `all_providers_failed` (several);
409 `provider_not_connected` when no candidate had a key. Messages name providers
and outcomes only: never a key, never a provider's 401 text (it quotes the key).

A cancelled call (the client went away) closes the upstream response at once: the
response is closed in `finally`, and the servicer closes this generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from services.providers.adapters import (
    RequestRefused,
    TokenUsage,
    UpstreamFormatError,
    UpstreamRequest,
    UpstreamStreamError,
    parse_body,
)
from services.providers.adapters.sse import SseDecoder, is_done
from services.providers.vault import KeyDecryptionError, mask
from services.providers.vendors import Vendor
from stepblend.v1 import providers_pb2, router_pb2

log = logging.getLogger(__name__)

_MAX_ERROR_BODY = 64 * 1024
# After `[DONE]` the rest of the body (the chunked terminator) is read so the
# connection goes back to the pool; a provider that keeps talking is cut off.
_DRAIN_SECONDS = 0.5


@dataclass(frozen=True)
class Timeouts:
    """Upstream timeouts in seconds: `connect`; `read`, the longest silence between
    bytes (so also the longest wait for a first token); `total`, the whole attempt."""

    connect: float = 5.0
    read: float = 60.0
    total: float = 600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Timeouts:
        """From `STEPBLEND_PROVIDER_CONNECT_TIMEOUT`, `..._READ_TIMEOUT`, `..._TOTAL_TIMEOUT`."""

        def seconds(name: str, default: float) -> float:
            raw = env.get(f"STEPBLEND_PROVIDER_{name}_TIMEOUT", "").strip()
            value = float(raw) if raw else default
            if value <= 0:
                raise ValueError(f"STEPBLEND_PROVIDER_{name}_TIMEOUT must be positive")
            return value

        return cls(seconds("CONNECT", cls.connect), seconds("READ", cls.read), seconds("TOTAL", cls.total))


def make_client(timeouts: Timeouts) -> httpx.AsyncClient:
    """The one pooled client every upstream call goes through."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=timeouts.connect, read=timeouts.read, write=timeouts.read, pool=timeouts.connect),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30),
        headers={"user-agent": "stepblend"},
        follow_redirects=False,
    )


class KeySource(Protocol):
    def get_plaintext(self, account_id: str, provider: str) -> str | None: ...


def completion_id_for(request_id: str) -> str:
    return request_id if request_id.startswith("chatcmpl-") else f"chatcmpl-{request_id}"


class _Failed(Exception):
    """An attempt failed before it served anything: the walk may go on."""

    def __init__(self, outcome: str, status: int = 0, refusal: providers_pb2.Error | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.status = status
        # Set when the provider refused the request itself: answer it, no fallback.
        self.refusal = refusal


@dataclass(frozen=True)
class _Call:
    """One attempt's fixed inputs."""

    request: providers_pb2.ExecuteRequest
    candidate: router_pb2.Candidate
    vendor: Vendor
    api_key: str
    upstream: UpstreamRequest
    completion_id: str
    started: float

    def headers(self, stream: bool) -> dict[str, str]:
        accept = "text/event-stream" if stream else "application/json"
        return {**self.vendor.adapter.auth_headers(self.api_key), "content-type": "application/json", "accept": accept}

    def ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def attempt(self, outcome: str, status: int, ttft_ms: int = 0) -> providers_pb2.ExecuteEvent:
        return _attempt(self.candidate, outcome, status, self.ms(), ttft_ms)


class Executor:
    def __init__(
        self, client: httpx.AsyncClient, keys: KeySource, vendors: Mapping[str, Vendor], timeouts: Timeouts
    ) -> None:
        self._client = client
        self._keys = keys
        self._vendors = vendors
        self._timeouts = timeouts

    async def execute(self, request: providers_pb2.ExecuteRequest) -> AsyncGenerator[providers_pb2.ExecuteEvent]:
        """The events of one request, in the order the module docstring gives."""
        try:
            body = parse_body(request.body)
        except RequestRefused as exc:
            yield _error(400, "invalid_request_error", exc.code, exc.message, exc.param)
            return
        completion_id = completion_id_for(request.request_id)
        failures: list[providers_pb2.Attempt] = []
        for candidate in request.candidates:
            started = time.monotonic()
            try:
                call = await self._prepare(request, body, candidate, completion_id, started)
                run = self._stream(call) if request.stream else self._complete(call)
                async with contextlib.aclosing(run) as events:
                    async for event in events:
                        yield event
                return
            except RequestRefused as exc:
                yield _attempt(candidate, "bad_request", 0, int((time.monotonic() - started) * 1000))
                yield _error(400, "invalid_request_error", exc.code, exc.message, exc.param)
                return
            except _Failed as failure:
                event = _attempt(candidate, failure.outcome, failure.status, int((time.monotonic() - started) * 1000))
                failures.append(event.attempt)
                log.info(
                    "attempt on %s/%s failed: %s (HTTP %s)",
                    candidate.provider,
                    candidate.model,
                    failure.outcome,
                    failure.status,
                    extra={"request_id": request.request_id},
                )
                yield event
                if failure.refusal is not None:
                    yield providers_pb2.ExecuteEvent(error=failure.refusal)
                    return
        yield providers_pb2.ExecuteEvent(error=final_error(failures))

    async def _prepare(
        self,
        request: providers_pb2.ExecuteRequest,
        body: dict[str, Any],
        candidate: router_pb2.Candidate,
        completion_id: str,
        started: float,
    ) -> _Call:
        vendor = self._vendors.get(candidate.provider)
        if vendor is None:
            log.warning("the catalog names provider %r, which vendors.toml lacks", candidate.provider)
            raise _Failed("provider_not_connected")
        try:
            api_key = await asyncio.to_thread(self._keys.get_plaintext, request.account_id, candidate.provider)
        except KeyDecryptionError:
            log.error(
                "a stored %s key does not decrypt: was STEPBLEND_KEY_ENCRYPTION_KEY changed?",
                candidate.provider,
                extra={"request_id": request.request_id, "account_id": request.account_id},
            )
            raise _Failed("provider_key_invalid") from None
        if api_key is None:
            raise _Failed("provider_not_connected")
        upstream = vendor.adapter.build_request(body, candidate, request.stream)
        return _Call(request, candidate, vendor, api_key, upstream, completion_id, started)

    async def _complete(self, call: _Call) -> AsyncGenerator[providers_pb2.ExecuteEvent]:
        deadline = asyncio.get_running_loop().time() + self._timeouts.total
        url = call.vendor.url(call.upstream.path)
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.post(url, content=call.upstream.content, headers=call.headers(False))
        except (httpx.TimeoutException, TimeoutError):
            raise _Failed("timeout") from None
        except httpx.ConnectError:
            raise _Failed("connect_error") from None
        except httpx.HTTPError:
            raise _Failed("provider_error") from None
        if response.status_code != 200:
            raise _http_failure(call, response.status_code, response.content[:_MAX_ERROR_BODY])
        try:
            completion, usage = call.vendor.adapter.parse_completion(
                response.content, call.completion_id, call.candidate.model, created=call.request.created
            )
        except UpstreamFormatError:
            raise _Failed("provider_error", response.status_code) from None
        latency = call.ms()
        yield call.attempt("ok", response.status_code, latency)
        yield providers_pb2.ExecuteEvent(completion=completion)
        if usage is not None:
            yield _usage(usage)

    async def _stream(self, call: _Call) -> AsyncGenerator[providers_pb2.ExecuteEvent]:
        deadline = asyncio.get_running_loop().time() + self._timeouts.total
        request = self._client.build_request(
            "POST", call.vendor.url(call.upstream.path), content=call.upstream.content, headers=call.headers(True)
        )
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.send(request, stream=True)
        except (httpx.TimeoutException, TimeoutError):
            raise _Failed("timeout") from None
        except httpx.ConnectError:
            raise _Failed("connect_error") from None
        except httpx.HTTPError:
            raise _Failed("provider_error") from None
        try:
            if response.status_code != 200:
                raise _http_failure(call, response.status_code, await _read_some(response, deadline))
            adapter, include_usage = call.vendor.adapter, call.request.include_usage
            decoder = SseDecoder()
            body = response.aiter_bytes()
            served = False
            usage: TokenUsage | None = None
            done = False
            while not done:
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await anext(body, None)
                except (httpx.TimeoutException, TimeoutError):
                    if not served:
                        raise _Failed("timeout", response.status_code) from None
                    yield _broken(call, "timeout")
                    return
                except httpx.HTTPError:
                    if not served:
                        raise _Failed("provider_error", response.status_code) from None
                    yield _broken(call, "provider_error")
                    return
                for sse in decoder.feed(data) if data is not None else decoder.finish():
                    if is_done(sse.data):
                        done = True
                        break
                    try:
                        chunk, chunk_usage = adapter.parse_chunk(
                            sse.data,
                            call.completion_id,
                            call.candidate.model,
                            created=call.request.created,
                            include_usage=include_usage,
                        )
                    except (UpstreamFormatError, UpstreamStreamError):
                        if not served:
                            raise _Failed("provider_error", response.status_code) from None
                        yield _broken(call, "provider_error")
                        return
                    usage = chunk_usage or usage
                    if chunk is None:
                        continue
                    if not served:
                        served = True
                        yield call.attempt("ok", response.status_code, call.ms())
                    yield providers_pb2.ExecuteEvent(chunk=chunk)
                if data is None:
                    break
            if not served:
                yield call.attempt("ok", response.status_code, call.ms())
            if usage is not None:
                yield _usage(usage)
            if done:
                await _drain(body)
        finally:
            await response.aclose()


def _http_failure(call: _Call, status: int, body: bytes) -> _Failed:
    if status in (401, 403):
        return _Failed("provider_key_invalid", status)
    if status == 429:
        return _Failed("rate_limited", status)
    if status in (400, 404, 413, 422):
        said = call.vendor.adapter.error_details(body)
        message = said.message or f"{call.candidate.provider} refused the request (HTTP {status})"
        # A provider may quote what it was sent; the key must not travel back.
        message = message.replace(call.api_key, mask(call.api_key))
        code = said.code or "invalid_request"
        refusal = providers_pb2.Error(
            status=400, type="invalid_request_error", code=code, message=message, param=said.param
        )
        return _Failed("bad_request", status, refusal)
    return _Failed("provider_error", status)


async def _read_some(response: httpx.Response, deadline: float) -> bytes:
    parts: list[bytes] = []
    size = 0
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout_at(deadline):
            async for part in response.aiter_bytes():
                parts.append(part)
                size += len(part)
                if size >= _MAX_ERROR_BODY:
                    break
    return b"".join(parts)[:_MAX_ERROR_BODY]


async def _drain(body: AsyncIterator[bytes]) -> None:
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in body:
                pass


def _attempt(
    candidate: router_pb2.Candidate, outcome: str, status: int, latency_ms: int, ttft_ms: int = 0
) -> providers_pb2.ExecuteEvent:
    return providers_pb2.ExecuteEvent(
        attempt=providers_pb2.Attempt(
            provider=candidate.provider,
            model=candidate.model,
            outcome=outcome,
            status=status,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
        )
    )


def _usage(usage: TokenUsage) -> providers_pb2.ExecuteEvent:
    return providers_pb2.ExecuteEvent(
        usage=providers_pb2.Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cached_prompt_tokens=usage.cached_prompt_tokens,
        )
    )


def _error(status: int, kind: str, code: str, message: str, param: str = "") -> providers_pb2.ExecuteEvent:
    return providers_pb2.ExecuteEvent(
        error=providers_pb2.Error(status=status, type=kind, code=code, message=message, param=param)
    )


def _broken(call: _Call, outcome: str) -> providers_pb2.ExecuteEvent:
    where = f"{call.candidate.provider} ({call.candidate.model})"
    if outcome == "timeout":
        return _error(504, "api_error", "timeout", f"The provider {where} timed out in the middle of its answer.")
    return _error(502, "api_error", "stream_interrupted", f"The stream from {where} broke in the middle of its answer.")


def final_error(failures: list[providers_pb2.Attempt]) -> providers_pb2.Error:
    """The error for a request whose every candidate failed (see the module docstring)."""
    if not failures:
        return providers_pb2.Error(
            status=503, type="api_error", code="no_candidates", message="No candidate model to run the request on."
        )
    summary = "; ".join(
        f"{a.provider} ({a.model}): {a.outcome}" + (f" (HTTP {a.status})" if a.status else "") for a in failures
    )
    tried = [a for a in failures if a.outcome != "provider_not_connected"]
    if not tried:
        providers = ", ".join(dict.fromkeys(a.provider for a in failures))
        return providers_pb2.Error(
            status=409,
            type="invalid_request_error",
            code="provider_not_connected",
            message=f"No provider key is connected for {providers}. Connect one with PUT /api/v1/account/keys/{{provider}}.",
        )
    last = tried[-1].outcome
    if last == "rate_limited":
        return providers_pb2.Error(
            status=429,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            message=f"The providers are rate-limiting these requests; retry later. Tried: {summary}.",
        )
    if last == "timeout":
        return providers_pb2.Error(
            status=504, type="api_error", code="timeout", message=f"The provider timed out. Tried: {summary}."
        )
    if last == "provider_key_invalid":
        return providers_pb2.Error(
            status=502,
            type="api_error",
            code="provider_key_invalid",
            message=f"The provider rejected the stored API key; connect a valid one. Tried: {summary}.",
        )
    if len(tried) == 1:
        return providers_pb2.Error(
            status=502, type="api_error", code="provider_error", message=f"The provider failed. Tried: {summary}."
        )
    return providers_pb2.Error(
        status=503, type="api_error", code="all_providers_failed", message=f"Every provider failed. Tried: {summary}."
    )
