"""Which request parameters ask for nothing: null, or OpenAI's documented default.

SDKs often send such values (`n: 1`, `logprobs: false`). A model that does not take
the parameter would do the same without it, so the gateway does not report it to
the router (which would drop the models that refuse it: gateway/features.py), and
the providers' adapters drop it rather than refuse the request (adapters/params.py).
One table, so the router never excludes a model the adapter would have served, nor
picks one the adapter then refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["OPENAI_DEFAULTS", "is_inert"]

#: OpenAI's documented default of each parameter a vendor may refuse: sending the
#: default asks for nothing a vendor without the parameter would not do anyway.
OPENAI_DEFAULTS: Mapping[str, Any] = {
    "stream": False,
    "n": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "parallel_tool_calls": True,
    "logit_bias": {},
    "response_format": {"type": "text"},
}
_ABSENT = object()


def is_inert(param: str, value: Any) -> bool:
    """Whether sending `value` for `param` asks for nothing (null or OpenAI's default)."""
    default = OPENAI_DEFAULTS.get(param, _ABSENT)
    return value is None or (default is not _ABSENT and value == default and type(value) is type(default))
