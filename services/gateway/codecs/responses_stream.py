"""OpenAI chat.completion.chunk objects → the Responses API's semantic events.

In OpenAI's order, each event `event: TYPE\\ndata: JSON\\n\\n` with a
`sequence_number` counting from 0: `response.created`, `response.in_progress`;
then per output item `response.output_item.added` and

- a message: `response.content_part.added`, `response.output_text.delta`…,
  `response.output_text.done`, `response.content_part.done`;
- a function call: `response.function_call_arguments.delta`…,
  `response.function_call_arguments.done`;

then `response.output_item.done`; last `response.completed` (or
`response.incomplete` when the output budget ran out), whose `response` carries
the output, `usage` and `stepblend` — known only once the provider's stream ended.

A stream that breaks after it started ends with an `error` event (the openai SDK
raises it as an `APIError`) and `response.failed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.gateway.codecs.base import Answer, Parsed
from services.gateway.codecs.responses_render import (
    call_item,
    call_item_id,
    incomplete_reason,
    message_id,
    message_item,
    response_object,
    text_part,
    usage,
)
from services.gateway.errors import ApiError

__all__ = ["ResponsesStream", "error_event"]

_KEEPALIVE = b": keep-alive\n\n"


def frame(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_event(error: ApiError, sequence_number: int) -> bytes:
    """The `error` event: Responses' own fields, and OpenAI's `error` object, by which
    the openai SDK raises it."""
    inner = error.body()["error"]
    data = {
        "type": "error",
        "sequence_number": sequence_number,
        "code": error.code,
        "message": error.message,
        "param": error.param,
        "error": inner,
    }
    return frame("error", data)


@dataclass
class _Item:
    """An output item being streamed: the message, or one tool call."""

    kind: str  # "message" | "function_call"
    index: int  # its output_index
    id: str  # its item id
    text: str = ""
    call_id: str = ""
    name: str = ""
    done: bool = False


class ResponsesStream:
    """One streamed answer's renderer: the output items so far and the sequence."""

    def __init__(self, answer: Answer, parsed: Parsed) -> None:
        self._answer = answer
        self._parsed = parsed
        self._sequence = 0
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # by the chunks' tool call index
        self._finish: str | None = None
        self._reported: dict[str, Any] | None = None
        self._started = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return frame(kind, data)

    def _item_json(self, item: _Item, status: str) -> dict[str, Any]:
        if item.kind == "message":
            return message_item(self._answer, item.text, status, item.index)
        return call_item(self._answer, item.index, item.call_id, item.name, item.text, status)

    def _response(self, status: str, output: list[dict[str, Any]], **ended: Any) -> dict[str, Any]:
        return response_object(self._answer, self._parsed, status, output, **ended)

    def start(self) -> bytes:
        self._started = True
        created = self._response("in_progress", [])
        return self._event("response.created", response=created) + self._event("response.in_progress", response=created)

    def _where(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.index}

    def _new(self, kind: str, call: str = "", name: str = "") -> _Item:
        index = len(self._items)
        if kind == "message":
            return _Item(kind, index, message_id(self._answer, index))
        return _Item(kind, index, call_item_id(self._answer, index), call_id=call, name=name)

    def _begin(self, item: _Item) -> bytes:
        out = self._close()
        self._items.append(item)
        self._open = item
        out += self._event(
            "response.output_item.added", output_index=item.index, item=self._item_json(item, "in_progress")
        )
        if item.kind == "message":
            out += self._event("response.content_part.added", content_index=0, part=text_part(""), **self._where(item))
        return out

    def _close(self) -> bytes:
        item = self._open
        if item is None:
            return b""
        self._open = None
        item.done = True
        where = self._where(item)
        if item.kind == "message":
            out = self._event("response.output_text.done", content_index=0, text=item.text, logprobs=[], **where)
            out += self._event("response.content_part.done", content_index=0, part=text_part(item.text), **where)
        else:
            out = self._event("response.function_call_arguments.done", arguments=item.text, name=item.name, **where)
        done = self._item_json(item, self._item_status())
        return out + self._event("response.output_item.done", output_index=item.index, item=done)

    def _item_status(self) -> str:
        return "incomplete" if incomplete_reason(self._finish) else "completed"

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open is None or self._open.kind != "message":
            out += self._begin(self._new("message"))
        item = self._open
        assert item is not None
        item.text += text
        return out + self._event(
            "response.output_text.delta", content_index=0, delta=text, logprobs=[], **self._where(item)
        )

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        key = int(call.get("index", 0))
        function = call.get("function") or {}
        item = self._calls.get(key)
        if item is None:
            item = self._new("function_call", call.get("id") or "", function.get("name") or "")
            self._calls[key] = item
            out += self._begin(item)
        arguments = function.get("arguments")
        if not arguments:
            return out
        item.text += arguments
        if item.done:
            # A late piece of a call already closed (providers send calls one after
            # another, so this is not expected): too late for its events, kept for the end.
            return out
        return out + self._event("response.function_call_arguments.delta", delta=arguments, **self._where(item))

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = b""
        delta = choice.get("delta") or {}
        if delta.get("content"):
            out += self._text(delta["content"])
        for call in delta.get("tool_calls") or []:
            out += self._call(call)
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
        return out

    def chunks(self, chunks: Sequence[bytes]) -> bytes:
        out = b""
        for raw in chunks:
            chunk = orjson.loads(raw)
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) == 0:
                    out += self._choice(choice)
            if chunk.get("usage"):
                self._reported = chunk["usage"]
        return out

    def end(self) -> bytes:
        out = b""
        if not self._items:
            out += self._begin(self._new("message"))  # an empty answer is still a message
        out += self._close()
        status = "incomplete" if incomplete_reason(self._finish) else "completed"
        output = [self._item_json(item, self._item_status()) for item in self._items]
        final = self._response(
            status, output, finish_reason=self._finish, usage=usage(self._answer.tokens, self._reported)
        )
        return out + self._event(f"response.{status}", response=final)

    def broke(self, error: ApiError) -> bytes:
        out = error_event(error, self._sequence)
        self._sequence += 1
        if self._started:
            failed = self._response("failed", [self._item_json(item, "incomplete") for item in self._items])
            code = "rate_limit_exceeded" if error.status == 429 else "server_error"
            failed["error"] = {"code": code, "message": error.message}
            out += self._event("response.failed", response=failed)
        return out

    def keepalive(self) -> bytes:
        return _KEEPALIVE
