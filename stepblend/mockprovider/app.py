"""The mock provider as a plain ASGI app: OpenAI's `POST {prefix}/chat/completions`
plus a small control API for tests.

Control API (not part of OpenAI's):
- `POST /_mock/behaviour` `{"model": "<upstream id or *>", "status": 503, "delay_ms": 0,
  "ttft_ms": 0, "chunk_delay_ms": 0, "break_after_chunks": null, "message": null,
  "content": null, "times": null}` — how to answer that model (`*`: any model without
  its own). `status` other than 200 answers that status with an OpenAI error body
  (`message` overrides its text); `delay_ms` waits before the response starts;
  `ttft_ms` waits before the first chunk (non-streams: before the answer);
  `chunk_delay_ms` waits between chunks; `break_after_chunks` drops the connection
  after that many chunks; `content` replaces the echoed text; `times` applies the
  behaviour to that many requests only. `DELETE /_mock/behaviour` resets all.
- `GET /_mock/requests` — every chat request received, oldest first (the last
  10,000): `{"path", "headers", "body", "stream", "disconnected"}`; `disconnected`
  is true when a streaming client went away before the stream ended.
  `DELETE /_mock/requests` clears them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, fields
from typing import Any

import orjson

from stepblend.mockprovider import wire

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class BrokenStream(Exception):
    """Raised to drop a streaming connection on purpose (`break_after_chunks`)."""


@dataclass
class Behaviour:
    model: str = "*"
    status: int = 200
    delay_ms: int = 0
    ttft_ms: int = 0
    chunk_delay_ms: int = 0
    break_after_chunks: int | None = None
    message: str | None = None
    content: str | None = None
    times: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> Behaviour:
        if not isinstance(raw, dict):
            raise TypeError("behaviour must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
        behaviour = cls(**raw)
        for name in ("status", "delay_ms", "ttft_ms", "chunk_delay_ms"):
            if not isinstance(getattr(behaviour, name), int):
                raise TypeError(f"{name} must be an integer")
        return behaviour


class MockProvider:
    """ASGI app speaking OpenAI's Chat Completions wire format, deterministically."""

    def __init__(self, prefix: str = "/v1", reject_keys: Iterable[str] = (), max_recorded: int = 10_000) -> None:
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.reject_keys = frozenset(reject_keys)
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: deque[dict[str, Any]] = deque(maxlen=max_recorded)
        self._chat_path = f"{self.prefix}/chat/completions"
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        body = await _read_body(receive)
        if path == self._chat_path and method == "POST":
            await self._chat(scope, body, receive, send)
        elif path == "/_mock/behaviour" and method in ("POST", "DELETE"):
            await self._set_behaviour(method, body, send)
        elif path == "/_mock/requests" and method in ("GET", "DELETE"):
            if method == "DELETE":
                self.requests.clear()
            await _respond(send, 200, orjson.dumps(list(self.requests) if method == "GET" else {"ok": True}))
        else:
            message = f"Invalid URL ({method} {path})"
            await _respond(send, 404, wire.error(404, message, code="unknown_url"))

    async def _set_behaviour(self, method: str, body: bytes, send: Send) -> None:
        if method == "DELETE":
            self.behaviours.clear()
        else:
            try:
                behaviour = Behaviour.parse(orjson.loads(body))
            except (ValueError, TypeError) as exc:
                await _respond(send, 400, wire.error(400, str(exc)))
                return
            self.behaviours[behaviour.model] = behaviour
        await _respond(send, 200, b'{"ok":true}')

    def _behaviour_for(self, model: str) -> Behaviour | None:
        key = model if model in self.behaviours else "*"
        behaviour = self.behaviours.get(key)
        if behaviour is not None and behaviour.times is not None:
            behaviour.times -= 1
            if behaviour.times <= 0:
                del self.behaviours[key]
        return behaviour

    async def _chat(self, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        stream = isinstance(body, dict) and body.get("stream") is True
        record = {"path": scope["path"], "headers": headers, "body": body, "stream": stream, "disconnected": False}
        self.requests.append(record)

        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not key:
            message = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            await _respond(send, 401, wire.error(401, message, code=None))
            return
        if key in self.reject_keys:
            message = f"Incorrect API key provided: {_mask(key)}. You can find your API key at https://platform.openai.com/account/api-keys."
            await _respond(send, 401, wire.error(401, message))
            return
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"
            await _respond(send, 400, wire.error(400, message))
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            await _respond(send, 400, wire.error(400, "you must provide a model parameter", param="model"))
            return
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            message = "Invalid 'messages': empty array. Expected an array with minimum length 1."
            await _respond(send, 400, wire.error(400, message, param="messages", code="empty_array"))
            return

        behaviour = self._behaviour_for(model) or Behaviour()
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        if behaviour.status != 200:
            await _respond(send, behaviour.status, wire.error(behaviour.status, behaviour.message))
            return

        n = next(self._ids)
        completion_id = f"chatcmpl-mock{n:020d}"
        answer = wire.answer_for(body, f"call_mock{n:015d}", behaviour.content)
        prompt, created = wire.prompt_tokens(body), int(time.time())
        if not stream:
            if behaviour.ttft_ms:
                await asyncio.sleep(behaviour.ttft_ms / 1000)
            await _respond(send, 200, wire.completion(completion_id, created, model, answer, prompt))
            return
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks = wire.chunks(completion_id, created, model, answer, prompt, include_usage)
        finished = await _stream(send, receive, chunks, behaviour, completion_id)
        if not finished:
            record["disconnected"] = True


async def _stream(send: Send, receive: Receive, chunks: list[bytes], behaviour: Behaviour, request_id: str) -> bool:
    """Send the SSE stream; False when the client went away before its end."""
    await send(
        {"type": "http.response.start", "status": 200, "headers": [*_SSE, (b"x-request-id", request_id.encode())]}
    )
    # The body has been read, so the next receive() only returns on disconnect.
    gone = asyncio.ensure_future(receive())
    try:

        async def wait(ms: int) -> bool:
            if ms:
                await asyncio.wait((gone,), timeout=ms / 1000)
            return gone.done()

        if await wait(behaviour.ttft_ms):
            return False
        for i, chunk in enumerate(chunks):
            if i and await wait(behaviour.chunk_delay_ms):
                return False
            if behaviour.break_after_chunks is not None and i >= behaviour.break_after_chunks:
                raise BrokenStream
            if gone.done():
                return False
            await send({"type": "http.response.body", "body": b"data: " + chunk + b"\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        return True
    finally:
        gone.cancel()


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(parts)


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _mask(key: str) -> str:
    return f"{key[:3]}*****{key[-4:]}" if len(key) >= 12 else "*****"
