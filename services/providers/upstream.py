"""The providers service's upstream HTTP: one pooled `aiohttp.ClientSession` for every
provider call, the CAs it trusts, the proxies it honours, and bounded reads.

A hostile or broken upstream cannot exhaust the service through it:
- bodies are asked for and read uncompressed (`Accept-Encoding: identity`, no
  automatic decompression), so a small compressed body cannot unpack into gigabytes;
  a compressed answer the provider sends anyway is unreadable, a provider error;
- a non-streamed answer is read up to `MAX_ANSWER_BYTES`, an error body up to
  `MAX_ERROR_BODY`; past that the upstream is cut off (`AnswerTooLarge`);
- streamed bodies are bounded per line by the SSE decoder (adapters/sse.py) and
  in time by the executor's deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import urllib.request
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import aiohttp
import certifi

from services.providers.timeouts import Timeouts

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_ERROR_BODY",
    "AnswerTooLarge",
    "drain",
    "environment_proxy",
    "make_client",
    "read_answer",
    "read_some",
]

MAX_ERROR_BODY = 64 * 1024
# A whole chat completion is a few hundred kB at the most (a long answer with many
# tool calls); 16 MiB leaves room for any real one.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# After the end of a stream the rest of the body (the chunked terminator) is read so
# the connection goes back to the pool; a provider that keeps talking is cut off.
_DRAIN_SECONDS = 0.5


class AnswerTooLarge(Exception):
    """The upstream's answer passed the size a real answer can have."""


def make_client(timeouts: Timeouts, trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> aiohttp.ClientSession:
    """The one pooled session every upstream call goes through (call it in the
    event loop). Only the connection (pool wait included) is timed here: the
    executor bounds every other wait itself, per call, with the first-token, idle
    and total deadlines. No cookies are kept; environment proxies are the
    executor's (`environment_proxy`), read once rather than per request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30, ssl=_tls_context()),
        timeout=aiohttp.ClientTimeout(total=None, connect=timeouts.connect),
        headers={"user-agent": "stepblend", "accept-encoding": "identity"},
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=list(trace_configs) or None,
        trust_env=False,
        auto_decompress=False,
    )


def _tls_context() -> ssl.SSLContext:
    """The CAs trusted, as the HTTP client before this one chose them: the bundle
    `SSL_CERT_FILE` or the directory `SSL_CERT_DIR` names, else certifi's."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


def environment_proxy(url: str) -> str | None:
    """The proxy `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` name for `url` (none when
    `NO_PROXY` covers its host), as the HTTP client before this one honoured them."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


async def read_answer(response: aiohttp.ClientResponse, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """The whole body of a non-streamed answer; AnswerTooLarge past `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    async for part in response.content.iter_any():
        size += len(part)
        if size > limit:
            raise AnswerTooLarge(f"the answer passed {limit // (1024 * 1024)} MiB and was cut off")
        parts.append(part)
    return b"".join(parts)


async def read_some(response: aiohttp.ClientResponse, deadline: float) -> bytes:
    parts: list[bytes] = []
    size = 0
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with asyncio.timeout_at(deadline):
            async for part in response.content.iter_any():
                parts.append(part)
                size += len(part)
                if size >= MAX_ERROR_BODY:
                    break
    return b"".join(parts)[:MAX_ERROR_BODY]


async def drain(body: AsyncIterator[bytes]) -> None:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in body:
                pass
