"""The request's routing features, computed once by the gateway.

The router never sees message content; it gets these numbers and flags instead.
Prompt tokens are counted with OpenAI's o200k_base BPE (tiktoken, offline:
tokens.py) plus the chat format's per-message overhead, and an image counts as
the most a high-detail image can cost, so the estimate errs high. Text that
spells a special token ("<|endoftext|>") is counted as the text it is.

BPE takes time quadratic in the length of a pre-token, so a run of more than
`MAX_RUN` word characters, symbols or spaces (a base64 blob, a long compound word, a
body crafted to stall the gateway: 100,000 letters in a row took minutes) is counted
in pieces of that length. That keeps the time linear; cutting a word costs a token
or so more, so the estimate still errs high. Ordinary text, code and JSON have no
such runs and are counted exactly as before.
"""

from __future__ import annotations

import re
from typing import Protocol

import orjson

from services.common.inert import is_inert
from stepblend.v1 import router_pb2

from .schemas import ChatRequest, ImagePart, TextPart

TOKENS_PER_MESSAGE = 4  # role and separators in the chat format
TOKENS_PER_REPLY = 3  # the primed assistant turn
TOKENS_PER_IMAGE = 1_600  # worst case of a high-detail image tile grid

# Body fields every model takes (or StepBlend handles itself); the others are
# reported to the router, which drops models that refuse one (`stream: true` drops
# a model whose catalog row says it cannot stream).
_ALWAYS_TAKEN = frozenset({"model", "messages", "stream_options", "max_tokens", "max_completion_tokens", "user"})
MAX_RUN = 64
# Runs of one kind of character (word, punctuation and symbols, whitespace), which
# is where BPE's pre-tokens can grow long.
_AT_LEAST = "{" + str(MAX_RUN) + ",}"
_LONG_RUN = re.compile(rf"\w{_AT_LEAST}|[^\w\s]{_AT_LEAST}|\s{_AT_LEAST}")


class Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


def params(body: dict[str, object]) -> list[str]:
    """The parameters a body sets that ask for something, as the catalog names them:
    not null, not OpenAI's default (`n: 1`, `response_format: {"type": "text"}`), which
    the adapters drop for a model that refuses the parameter (services/common/inert.py)."""
    return [
        key
        for key, value in body.items()
        if key not in _ALWAYS_TAKEN and not key.startswith("stepblend_") and not is_inert(key, value)
    ]


def count_tokens(encoding: Encoding, text: str) -> int:
    """Tokens of `text`, with long runs without whitespace counted in pieces."""
    if len(text) <= MAX_RUN:
        return len(encoding.encode_ordinary(text))
    tokens = 0
    start = 0
    for run in _LONG_RUN.finditer(text):
        if run.start() > start:
            tokens += len(encoding.encode_ordinary(text[start : run.start()]))
        tokens += sum(
            len(encoding.encode_ordinary(text[i : i + MAX_RUN])) for i in range(run.start(), run.end(), MAX_RUN)
        )
        start = run.end()
    if start < len(text):
        tokens += len(encoding.encode_ordinary(text[start:]))
    return tokens


def features(request: ChatRequest, encoding: Encoding, body: dict[str, object]) -> router_pb2.RequestFeatures:
    tokens = TOKENS_PER_REPLY
    vision = False
    for message in request.messages:
        tokens += TOKENS_PER_MESSAGE
        content = message.content
        if isinstance(content, str):
            tokens += count_tokens(encoding, content)
        elif content:
            for part in content:
                if isinstance(part, TextPart):
                    tokens += count_tokens(encoding, part.text)
                elif isinstance(part, ImagePart):
                    vision = True
                    tokens += TOKENS_PER_IMAGE
        if message.tool_calls:
            for call in message.tool_calls:
                tokens += count_tokens(encoding, call.function.name + call.function.arguments) + 4
        if message.name:
            tokens += count_tokens(encoding, message.name) + 1
    if request.tools:
        tokens += count_tokens(encoding, orjson.dumps(request.tools).decode())
    response_format = request.response_format or {}
    return router_pb2.RequestFeatures(
        prompt_tokens=tokens,
        max_output_tokens=request.output_budget(),
        needs_tools=bool(request.tools),
        needs_vision=vision,
        needs_json_schema=response_format.get("type") == "json_schema",
        params=params(body),
    )
