"""The mock provider as a plain ASGI app: OpenAI's `POST {prefix}/chat/completions`,
each OpenAI-compatible vendor's variant at `POST /<vendor>/v1/chat/completions`
(groq, deepseek, mistral, together, xai, fireworks, cerebras, openrouter, perplexity,
ollama, local — see `flavours`), Anthropic's `POST /v1/messages`, Gemini's `POST
/v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, OpenAI's embeddings at `POST {prefix}/embeddings`
and `POST /<vendor>/v1/embeddings` (embeddings.py), Azure OpenAI's
`POST [/azure]/openai/deployments/{deployment}/chat/completions` (azure.py), AWS
Bedrock's `POST [/bedrock]/model/{modelId}/converse[-stream]` (bedrock_wire.py, SigV4
checked by sigv4.py), and a small control API for tests.

Control API (not part of any provider's):
- `POST /_mock/behaviour` `{"model": "<upstream id or *>", "status": 503, "delay_ms": 0,
  "ttft_ms": 0, "chunk_delay_ms": 0, "break_after_chunks": null, "stream_error": null,
  "message": null, "content": null, "tool_calls": 1, "cached_tokens": 0, "times": null}`
  — how to answer that model (`*`: any model without its own). `status` other than
  200 answers that status with the wire format's error body (`message` overrides its
  text); `delay_ms` waits before the response starts; `ttft_ms` waits before the
  first chunk (non-streams: before the answer); `chunk_delay_ms` waits between
  chunks; `break_after_chunks` drops the connection after that many SSE events
  (a short pause first, so a client has read them before the drop discards
  what it has not read), or,
  with `stream_error` (an error type such as `overloaded_error`), sends that error
  as an in-stream error event there instead and ends the stream; `content` replaces
  the echoed text; `tool_calls` is how many tool calls a tool answer makes;
  `cached_tokens` how many prompt tokens are reported as cache reads; `times`
  applies the behaviour to that many requests only. `DELETE /_mock/behaviour`
  resets all.
- `GET /_mock/requests` — every request received, oldest first (the last 10,000):
  `{"path", "query", "headers", "body", "stream", "disconnected"}`; `disconnected` is true
  when the client went away before the stream ended (or, not streaming, during
  `ttft_ms`).
  `DELETE /_mock/requests` clears them.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

import stepblend.mockprovider.anthropic_wire as anthropic_wire
import stepblend.mockprovider.azure as azure
import stepblend.mockprovider.bedrock_wire as bedrock_wire
import stepblend.mockprovider.embeddings as embeddings
import stepblend.mockprovider.gemini_wire as gemini_wire
import stepblend.mockprovider.wire as wire
from stepblend.mockprovider.answers import answer
from stepblend.mockprovider.asgi import Receive, Scope, Send, left_while_waiting, mask, read_body, respond
from stepblend.mockprovider.behaviour import Behaviour
from stepblend.mockprovider.flavours import FLAVOURS, Flavour

MESSAGES_PATH = "/v1/messages"
_FLAVOUR_PATH = re.compile(r"^/(?P<flavour>[a-z]+)/v1/chat/completions$")
_EMBEDDINGS_PATH = re.compile(r"^(/[a-z]+/v1|/v1)/embeddings$")
_GEMINI_PATH = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|batchEmbedContents)$"
)


_SETTLE_BEFORE_DROP_MS = 200


class BrokenStream(Exception):
    """Raised to drop a streaming connection on purpose (`break_after_chunks`)."""


@dataclass(frozen=True)
class _Stream:
    """A stream to send: framed events, the frame that ends it, the frame of an error."""

    frames: list[bytes]
    end: bytes
    error: bytes
    content_type: bytes = b"text/event-stream; charset=utf-8"


class MockProvider:
    """ASGI app speaking OpenAI's and Anthropic's wire formats, deterministically."""

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
        body = await read_body(receive)
        flavour = _FLAVOUR_PATH.match(path)
        gemini = _GEMINI_PATH.match(path)
        deployment = azure.PATH.match(path)
        converse = bedrock_wire.PATH.match(path)
        if deployment is not None and method == "POST":
            await self._azure(scope, body, receive, send, deployment["deployment"])
        elif converse is not None and method == "POST":
            await self._converse(scope, body, receive, send, converse["model"], converse["operation"] != "converse")
        elif path == self._chat_path and method == "POST":
            await self._chat(scope, body, receive, send, FLAVOURS["openai"])
        elif flavour is not None and flavour["flavour"] in FLAVOURS and method == "POST":
            await self._chat(scope, body, receive, send, FLAVOURS[flavour["flavour"]])
        elif _EMBEDDINGS_PATH.match(path) and method == "POST":
            await self._embeddings(scope, body, send)
        elif path == MESSAGES_PATH and method == "POST":
            await self._messages(scope, body, receive, send)
        elif gemini is not None and method == "POST" and gemini["method"] == "batchEmbedContents":
            await self._gemini_embeddings(scope, body, send)
        elif gemini is not None and method == "POST":
            await self._generate(scope, body, receive, send, gemini["model"], gemini["method"] != "generateContent")
        elif path == "/_mock/behaviour" and method in ("POST", "DELETE"):
            await self._set_behaviour(method, body, send)
        elif path == "/_mock/requests" and method in ("GET", "DELETE"):
            if method == "DELETE":
                self.requests.clear()
            await respond(send, 200, orjson.dumps(list(self.requests) if method == "GET" else {"ok": True}))
        else:
            message = f"Invalid URL ({method} {path})"
            await respond(send, 404, wire.error(404, message, code="unknown_url"))

    async def _set_behaviour(self, method: str, body: bytes, send: Send) -> None:
        if method == "DELETE":
            self.behaviours.clear()
        else:
            try:
                behaviour = Behaviour.parse(orjson.loads(body))
            except (ValueError, TypeError) as exc:
                await respond(send, 400, wire.error(400, str(exc)))
                return
            self.behaviours[behaviour.model] = behaviour
        await respond(send, 200, b'{"ok":true}')

    def _behaviour_for(self, model: str) -> Behaviour | None:
        key = model if model in self.behaviours else "*"
        behaviour = self.behaviours.get(key)
        if behaviour is not None and behaviour.times is not None:
            behaviour.times -= 1
            if behaviour.times <= 0:
                del self.behaviours[key]
        return behaviour

    def _record(
        self, scope: Scope, raw: bytes, stream: bool | None = None
    ) -> tuple[dict[str, Any], dict[str, str], Any]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body, stream = _load(raw, stream)
        # What the client sent, before an edge (Azure's) rewrote it for the OpenAI one.
        received, sent = scope.get("mock.received", (scope["headers"], raw))
        record = {
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in received},
            "body": body if sent is raw else _load(sent, stream)[0],
            "stream": stream,
            "disconnected": False,
        }
        self.requests.append(record)
        return record, headers, body

    async def _azure(self, scope: Scope, raw: bytes, receive: Receive, send: Send, deployment: str) -> None:
        refused = azure.refusal(scope, raw, self.reject_keys)
        if refused is not None:
            self._record(scope, raw)
            await respond(send, *refused)
            return
        scope, raw = azure.as_openai(scope, raw, deployment)
        await self._chat(scope, raw, receive, send, FLAVOURS["azure"])

    async def _embeddings(self, scope: Scope, raw: bytes, send: Send) -> None:
        _record, headers, body = self._record(scope, raw)
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not key or key in self.reject_keys:
            await respond(send, 401, wire.error(401, f"Incorrect API key provided: {mask(key)}."))
            return
        behaviour = self._behaviour_for(body.get("model", "") if isinstance(body, dict) else "") or Behaviour()
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        if behaviour.status != 200:
            await respond(send, behaviour.status, wire.error(behaviour.status, behaviour.message))
            return
        status, answered = embeddings.answer(body)
        await respond(send, status, answered)

    async def _gemini_embeddings(self, scope: Scope, raw: bytes, send: Send) -> None:
        _record, headers, body = self._record(scope, raw)
        refused = gemini_wire.key_refusal(headers, self.reject_keys)
        if refused is not None:
            await respond(send, *refused)
            return
        await respond(send, *embeddings.gemini_answer(body))

    async def _chat(self, scope: Scope, raw: bytes, receive: Receive, send: Send, flavour: Flavour) -> None:
        record, headers, body = self._record(scope, raw)
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not key:
            message = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            await respond(send, 401, wire.error(401, message, code=None))
            return
        if key in self.reject_keys:
            message = f"Incorrect API key provided: {mask(key)}. You can find your API key at https://platform.openai.com/account/api-keys."
            await respond(send, 401, wire.error(401, message))
            return
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"
            await respond(send, 400, wire.error(400, message))
            return
        refusal = flavour.refusal(body)
        if refusal is not None:
            await respond(send, refusal[0], orjson.dumps(refusal[1]))
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            await respond(send, 400, wire.error(400, "you must provide a model parameter", param="model"))
            return
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            message = "Invalid 'messages': empty array. Expected an array with minimum length 1."
            await respond(send, 400, wire.error(400, message, param="messages", code="empty_array"))
            return

        behaviour = self._behaviour_for(model) or Behaviour()
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        if behaviour.status != 200:
            await respond(send, behaviour.status, wire.error(behaviour.status, behaviour.message))
            return

        n = next(self._ids)
        completion_id = f"chatcmpl-mock{n:020d}"
        said = answer(
            wire.ask_of(body),
            f"call_mock{n:015d}",
            content=behaviour.content,
            tool_calls=behaviour.tool_calls,
            reasoning=flavour.reasons(model),
        )
        prompt, created, cached = wire.prompt_tokens(body), int(time.time()), behaviour.cached_tokens
        if not record["stream"]:
            if behaviour.ttft_ms and await left_while_waiting(receive, behaviour.ttft_ms):
                record["disconnected"] = True
                return
            answer_body = wire.completion(completion_id, created, model, said, prompt, cached=cached, flavour=flavour)
            await respond(send, 200, answer_body)
            return
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks = wire.chunks(completion_id, created, model, said, prompt, include_usage, cached=cached, flavour=flavour)
        stream = _Stream(
            [b"data: " + chunk + b"\n\n" for chunk in chunks],
            b"data: [DONE]\n\n",
            b"data: " + wire.stream_error(behaviour.stream_error or "server_error", behaviour.message) + b"\n\n",
        )
        if not await _stream(send, receive, stream, behaviour, completion_id):
            record["disconnected"] = True

    async def _messages(self, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
        record, headers, body = self._record(scope, raw)
        n = next(self._ids)
        request_id = f"req_mock{n:020d}"
        problem = anthropic_wire.invalid(headers, body, self.reject_keys)
        if problem is not None:
            await respond(send, problem[0], anthropic_wire.error(*problem, request_id), request_id)
            return
        model = body["model"]
        behaviour = self._behaviour_for(model) or Behaviour()
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        if behaviour.status != 200:
            body_bytes = anthropic_wire.error(behaviour.status, behaviour.message, request_id)
            await respond(send, behaviour.status, body_bytes, request_id)
            return
        said = answer(
            anthropic_wire.ask_of(body),
            f"toolu_mock{n:015d}",
            content=behaviour.content,
            tool_calls=behaviour.tool_calls,
            preamble=True,
        )
        message_id = f"msg_mock{n:020d}"
        prompt, cached = anthropic_wire.prompt_tokens(body), behaviour.cached_tokens
        if not record["stream"]:
            if behaviour.ttft_ms:
                await asyncio.sleep(behaviour.ttft_ms / 1000)
            await respond(send, 200, anthropic_wire.message(message_id, model, said, prompt, cached), request_id)
            return
        stream = _Stream(
            anthropic_wire.events(message_id, model, said, prompt, cached),
            b"",
            anthropic_wire.error_frame(behaviour.stream_error or "overloaded_error", behaviour.message),
        )
        if not await _stream(send, receive, stream, behaviour, request_id):
            record["disconnected"] = True

    async def _generate(self, scope: Scope, raw: bytes, receive: Receive, send: Send, model: str, stream: bool) -> None:
        """Gemini's generateContent; the stream only as `alt=sse` (what StepBlend asks for)."""
        record, headers, body = self._record(scope, raw, stream)
        refusal = gemini_wire.refusal(headers, body, self.reject_keys)
        if refusal is None and stream and b"alt=sse" not in scope.get("query_string", b""):
            refusal = 400, gemini_wire.error(400, "mock: streamGenerateContent is served with alt=sse only")
        if refusal is not None:
            await respond(send, *refusal)
            return
        behaviour = self._behaviour_for(model) or Behaviour()
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        if behaviour.status != 200:
            await respond(send, behaviour.status, gemini_wire.error(behaviour.status, behaviour.message))
            return
        n = next(self._ids)
        said = answer(gemini_wire.ask_of(body), "", content=behaviour.content, tool_calls=behaviour.tool_calls)
        response_id = f"mock{n:020d}"
        counts = (gemini_wire.prompt_tokens(body), behaviour.cached_tokens, gemini_wire.thinking(body))
        if not stream:
            if behaviour.ttft_ms:
                await asyncio.sleep(behaviour.ttft_ms / 1000)
            await respond(send, 200, gemini_wire.response(response_id, model, said, *counts))
            return
        frames = gemini_wire.frames(response_id, model, said, *counts)
        error = gemini_wire.error_frame(behaviour.stream_error or "UNAVAILABLE", behaviour.message)
        if not await _stream(send, receive, _Stream(frames, b"", error), behaviour, response_id):
            record["disconnected"] = True

    async def _converse(self, scope: Scope, raw: bytes, receive: Receive, send: Send, model: str, stream: bool) -> None:
        """Bedrock's Converse / ConverseStream (bedrock_wire), behind its SigV4 gate (sigv4)."""
        record, headers, body = self._record(scope, raw, stream)
        refused = bedrock_wire.refusal(scope, headers, raw, body, self.reject_keys)
        behaviour = Behaviour() if refused else self._behaviour_for(model) or Behaviour()
        await asyncio.sleep(behaviour.delay_ms / 1000)
        if refused or behaviour.status != 200:
            status, error_body, more = refused or bedrock_wire.error_answer(behaviour.status, behaviour.message)
            await respond(send, status, error_body, headers=more)
            return
        n = next(self._ids)
        said = bedrock_wire.answer_to(body, f"tooluse_mock{n:010d}_", behaviour.content, behaviour.tool_calls)
        prompt, cached = bedrock_wire.prompt_tokens(body), behaviour.cached_tokens
        if not stream:
            await asyncio.sleep(behaviour.ttft_ms / 1000)
            await respond(send, 200, bedrock_wire.response(said, prompt, cached))
            return
        error = bedrock_wire.error_frame(behaviour.stream_error or "modelStreamErrorException", behaviour.message)
        sent = _Stream(bedrock_wire.frames(said, prompt, cached), b"", error, bedrock_wire.EVENT_STREAM)
        if not await _stream(send, receive, sent, behaviour, f"mock-{n}"):
            record["disconnected"] = True


def _load(raw: bytes, stream: bool | None) -> tuple[Any, bool]:
    """A request body (None when not JSON), and whether it asks to stream (unless `stream` says)."""
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    return body, (isinstance(body, dict) and body.get("stream") is True) if stream is None else stream


async def _stream(send: Send, receive: Receive, stream: _Stream, behaviour: Behaviour, request_id: str) -> bool:
    """Send the SSE stream; False when the client went away before its end."""
    framing = [(b"content-type", stream.content_type), (b"cache-control", b"no-cache")]
    headers = [*framing, (b"x-request-id", request_id.encode()), (b"request-id", request_id.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    # The body has been read, so the next receive() only returns on disconnect.
    gone = asyncio.ensure_future(receive())
    try:

        async def wait(ms: int) -> bool:
            if ms:
                await asyncio.wait((gone,), timeout=ms / 1000)
            return gone.done()

        if await wait(behaviour.ttft_ms):
            return False
        for i, frame in enumerate(stream.frames):
            if i and await wait(behaviour.chunk_delay_ms):
                return False
            if behaviour.break_at is not None and i >= behaviour.break_at:
                if behaviour.stream_error:
                    await send({"type": "http.response.body", "body": stream.error, "more_body": False})
                    return True
                # A client's HTTP library raises on a dropped connection before it
                # hands over what it buffered; give it time to read the events sent.
                if await wait(_SETTLE_BEFORE_DROP_MS):
                    return False
                raise BrokenStream
            if gone.done():
                return False
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": stream.end, "more_body": False})
        return True
    finally:
        gone.cancel()
