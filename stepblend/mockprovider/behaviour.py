"""How the mock answers a model, as `POST /_mock/behaviour` sets it (the control API
is described in `stepblend.mockprovider.app`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Behaviour"]


@dataclass
class Behaviour:
    model: str = "*"
    status: int = 200
    delay_ms: int = 0
    ttft_ms: int = 0
    chunk_delay_ms: int = 0
    break_after_chunks: int | None = None
    stream_error: str | None = None
    message: str | None = None
    content: str | None = None
    tool_calls: int = 1
    cached_tokens: int = 0
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
        for name in ("status", "delay_ms", "ttft_ms", "chunk_delay_ms", "tool_calls", "cached_tokens"):
            if not isinstance(getattr(behaviour, name), int):
                raise TypeError(f"{name} must be an integer")
        return behaviour

    @property
    def break_at(self) -> int | None:
        """After how many SSE events the stream breaks (a stream error alone: at once)."""
        if self.break_after_chunks is None and self.stream_error:
            return 0
        return self.break_after_chunks
