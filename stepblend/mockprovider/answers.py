"""What the mock says, whatever the wire: a deterministic answer to an `Ask`.

- With tools offered (and tool choice not "none", and the conversation not just
  answered by a tool), the answer calls tools: `tool_calls` calls (default 1), to
  the named tool or to the offered tools in turn, each with `{"<first parameter>":
  "<city>"}` (Paris, London, Tokyo…) split into small argument fragments. With
  `preamble` (Anthropic's way under `auto`) a short text comes first.
- Otherwise the text is "Hello! You said: <the last user text>" (or `content`),
  split into word pieces that each count as one completion token; a stop
  sequence cuts it (finish "stop_sequence"), and `max_tokens` truncates it (finish
  "length").
- With `reasoning`, thinking pieces come before the text (DeepSeek's reasoner).
- Asked for JSON (`json_keys`: the schema's property names, none for plain JSON
  mode), the text is a JSON object: each property set to a city, or `{"echo": <the
  last user text>}` without a schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MAX_ECHO_CHARS = 200
CITIES = ("Paris", "London", "Tokyo", "Lima", "Oslo")
REASONING = "The user greets me. I should answer briefly."

_PIECE = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    pieces: tuple[str, ...]

    @property
    def arguments(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class Answer:
    """Text pieces and/or tool calls, and why it ended: `finish` is one of stop,
    stop_sequence, length, tool_calls (each wire names these its own way)."""

    pieces: tuple[str, ...]
    finish: str
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: tuple[str, ...] = ()
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces) + len(self.reasoning) + sum(len(call.pieces) for call in self.tool_calls)


@dataclass(frozen=True)
class Ask:
    """What a request asks for, read from either wire format."""

    last_text: str = ""
    # (name, first parameter) of each tool offered
    tools: tuple[tuple[str, str], ...] = ()
    # auto | none | required | named
    choice: str = "auto"
    chosen: str | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    # the last message is a tool's result: answer it in text
    after_tool: bool = False
    # the answer must be JSON with these properties (none named: any object)
    json_keys: tuple[str, ...] | None = None


def answer(
    ask: Ask,
    call_id: str,
    *,
    content: str | None = None,
    tool_calls: int = 1,
    preamble: bool = False,
    reasoning: bool = False,
) -> Answer:
    """The deterministic answer to `ask`; call ids are `call_id` + a digit."""
    thoughts = tuple(_PIECE.findall(REASONING)) if reasoning else ()
    if ask.tools and ask.choice != "none" and not ask.after_tool:
        calls = tuple(_call(ask, i, f"{call_id}{i}") for i in range(max(1, tool_calls)))
        intro = f"Let me call {calls[0].name}. " if preamble and ask.choice == "auto" else ""
        return Answer(tuple(_PIECE.findall(intro)), "tool_calls", calls, thoughts)
    text = content if content is not None else _text(ask)
    finish, stop_sequence = "stop", None
    cuts = [(text.find(s), s) for s in ask.stop if s and s in text]
    if cuts:
        at, stop_sequence = min(cuts)
        text, finish = text[:at], "stop_sequence"
    pieces = tuple(_PIECE.findall(text)) or ("",)
    if ask.max_tokens is not None and ask.max_tokens < len(pieces):
        pieces, finish, stop_sequence = pieces[: ask.max_tokens], "length", None
    return Answer(pieces, finish, (), thoughts, stop_sequence)


def _text(ask: Ask) -> str:
    if ask.json_keys is None:
        return "Hello! You said: " + ask.last_text[:MAX_ECHO_CHARS]
    if not ask.json_keys:
        return json.dumps({"echo": ask.last_text[:MAX_ECHO_CHARS]})
    return json.dumps({key: CITIES[i % len(CITIES)] for i, key in enumerate(ask.json_keys)})


def _call(ask: Ask, i: int, call_id: str) -> ToolCall:
    named = [tool for tool in ask.tools if tool[0] == ask.chosen] if ask.choice == "named" else []
    name, param = named[0] if named else ask.tools[i % len(ask.tools)]
    city = CITIES[i % len(CITIES)]
    return ToolCall(call_id, name, ('{"', param, '": "', city[:3], city[3:], '"}'))
