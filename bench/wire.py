"""What reading a provider's streamed payload costs, per chunk: the figures behind the
choice of msgspec for the adapters' typed wire models (adapters/wire_*.py).

    python bench/wire.py

Every streamed chunk of every request is read once on the providers' hot path, so the
typed models must cost no more than the dicts they replaced. Printed, in µs per chunk
(best of several rounds, one core, nothing else of StepBlend around it):
- `decode`: the bytes of a realistic OpenAI chunk and an Anthropic `content_block_delta`
  read into what the adapter looks at — orjson into dicts (then read with `.get` and
  `isinstance`, as the adapters did), msgspec into Structs, pydantic v2 into models;
- `translator`: the whole per-event work of the adapters as they are now (read, rewrite,
  serialize the OpenAI chunk to forward), through their public `StreamTranslator`.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pydantic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.providers.adapters import make_adapter  # noqa: E402
from services.providers.adapters.base import SseEvent  # noqa: E402

# A content chunk as OpenAI streams it (gpt-4o-mini, with stream_options.include_usage).
OPENAI_CHUNK = (
    b'{"id":"chatcmpl-BPq5LZbXhYmc2ePZzvKMj2P1vQ4Jk","object":"chat.completion.chunk","created":1745420315,'
    b'"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_dbaca60df0",'
    b'"choices":[{"index":0,"delta":{"content":" the quick brown fox"},"logprobs":null,"finish_reason":null}],'
    b'"usage":null,"obfuscation":"Xq3"}'
)
# A text delta as Anthropic streams it.
ANTHROPIC_DELTA = (
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the quick brown fox"}}'
)


# --- the dict reading the adapters did (orjson, then .get and isinstance) ---------------


def dict_openai(data: bytes) -> Any:
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        raise ValueError
    usage = obj.get("usage")
    choices = obj["choices"] if isinstance(obj.get("choices"), list) else []
    finished = any(isinstance(c, dict) and c.get("finish_reason") for c in choices)
    return obj, usage if isinstance(usage, dict) else None, finished


def dict_anthropic(data: bytes) -> Any:
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        raise ValueError
    delta = obj.get("delta")
    if not isinstance(delta, dict):
        raise ValueError
    text = delta.get("text")
    return obj.get("type"), obj.get("index"), delta.get("type"), text if isinstance(text, str) else None


# --- msgspec Structs (unknown fields are skipped, not built) ----------------------------


class MsUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class MsChoice(msgspec.Struct):
    finish_reason: str | None = None


class MsChunk(msgspec.Struct):
    choices: list[MsChoice] = []
    usage: MsUsage | None = None


class MsDelta(msgspec.Struct):
    type: str = ""
    text: str | None = None
    partial_json: str | None = None


class MsEvent(msgspec.Struct):
    type: str = ""
    index: int | None = None
    delta: MsDelta | None = None


_ms_chunk = msgspec.json.Decoder(MsChunk)
_ms_event = msgspec.json.Decoder(MsEvent)


def msgspec_openai(data: bytes) -> Any:
    # The chunk is forwarded with every field the vendor put in it, so a dict is still
    # made for that; the typed read comes on top of it.
    chunk = _ms_chunk.decode(data)
    return orjson.loads(data), chunk.usage, any(c.finish_reason for c in chunk.choices)


def msgspec_openai_typed_only(data: bytes) -> Any:
    chunk = _ms_chunk.decode(data)
    return chunk.usage, any(c.finish_reason for c in chunk.choices)


def msgspec_anthropic(data: bytes) -> Any:
    event = _ms_event.decode(data)
    return event.type, event.index, event.delta


# --- pydantic v2 models ------------------------------------------------------------------


class PdUsage(pydantic.BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class PdChoice(pydantic.BaseModel):
    finish_reason: str | None = None


class PdChunk(pydantic.BaseModel):
    choices: list[PdChoice] = []
    usage: PdUsage | None = None


class PdDelta(pydantic.BaseModel):
    type: str = ""
    text: str | None = None
    partial_json: str | None = None


class PdEvent(pydantic.BaseModel):
    type: str = ""
    index: int | None = None
    delta: PdDelta | None = None


def pydantic_openai(data: bytes) -> Any:
    chunk = PdChunk.model_validate_json(data)
    return orjson.loads(data), chunk.usage, any(c.finish_reason for c in chunk.choices)


def pydantic_anthropic(data: bytes) -> Any:
    event = PdEvent.model_validate_json(data)
    return event.type, event.index, event.delta


# --- the adapters' translators as they are -----------------------------------------------


def translator_openai() -> Callable[[], Any]:
    translator = make_adapter("openai_compatible", {}).stream_translator("chatcmpl-r1", "gpt-4o-mini", created=1)
    event = SseEvent(OPENAI_CHUNK)
    return lambda: translator.feed(event)


def translator_anthropic() -> Callable[[], Any]:
    translator = make_adapter("anthropic", {}).stream_translator("chatcmpl-r1", "claude-sonnet-4", created=1)
    event = SseEvent(ANTHROPIC_DELTA, "content_block_delta")
    return lambda: translator.feed(event)


def per_call_us(fn: Callable[[], Any], number: int = 100_000, rounds: int = 5) -> float:
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e6


def main() -> None:
    rows = [
        ("decode openai chunk    dict (orjson)", lambda: dict_openai(OPENAI_CHUNK)),
        ("decode openai chunk    msgspec + orjson dict", lambda: msgspec_openai(OPENAI_CHUNK)),
        ("decode openai chunk    msgspec alone", lambda: msgspec_openai_typed_only(OPENAI_CHUNK)),
        ("decode openai chunk    pydantic + orjson dict", lambda: pydantic_openai(OPENAI_CHUNK)),
        ("decode anthropic event dict (orjson)", lambda: dict_anthropic(ANTHROPIC_DELTA)),
        ("decode anthropic event msgspec", lambda: msgspec_anthropic(ANTHROPIC_DELTA)),
        ("decode anthropic event pydantic", lambda: pydantic_anthropic(ANTHROPIC_DELTA)),
        ("translator openai_compatible feed", translator_openai()),
        ("translator anthropic feed", translator_anthropic()),
    ]
    print(f"python {sys.version.split()[0]}, msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}")
    for name, fn in rows:
        print(f"{name:<48} {per_call_us(fn):6.2f} µs/chunk")


if __name__ == "__main__":
    main()
