"""The HTTP bodies the gateway accepts, validated once at the edge.

The chat body is validated for what StepBlend must understand (model, messages,
limits, tools, its own `stepblend_*` fields); everything else is kept as the
client sent it and passed through to OpenAI-shaped providers.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=256)]

MAX_MESSAGES = 2048
# The largest request body, over HTTP (413 past it) and over the gRPC chat API.
MAX_BODY_BYTES = 8 * 1024 * 1024

# Levels of JSON nesting a chat body may have (the body object is level 1). The
# body is written again for the provider, and orjson writes at most 254 levels; no
# real chat body needs more than a few dozen.
MAX_DEPTH = 64


def nested_deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` (parsed JSON) has more than `limit` levels of objects and arrays."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(limit):
        below: list[Any] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            below.extend(child for child in children if isinstance(child, (dict, list)))
        if not below:
            return False
        level = below
    return True


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["image_url"]
    image_url: ImageUrl


class OtherPart(BaseModel):
    """Parts StepBlend does not inspect (input_audio, file, refusal …), passed through."""

    model_config = ConfigDict(extra="allow")
    type: str


ContentPart = Annotated[TextPart | ImagePart | OtherPart, Field(union_mode="left_to_right")]


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: NonEmpty
    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    stepblend_max_cost: Annotated[Decimal, Field(gt=0, le=1_000_000)] | None = None
    stepblend_strategy: str | None = None

    def output_budget(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 0


class PutKeyBody(BaseModel):
    """`{"api_key": ...}`, or for a provider whose keys have several fields (azure) their
    object (SPEC.md §11): the providers service, which knows each vendor's fields,
    validates it (the fields are not this edge's to know)."""

    model_config = ConfigDict(extra="allow")
    api_key: Annotated[str, StringConstraints(max_length=4096, strip_whitespace=True)] | None = None

    def secret(self) -> str:
        """What the vault is sent: the bare key, or the JSON object of the fields."""
        extra = self.model_extra or {}
        if not extra and self.api_key is not None:
            return self.api_key
        fields = {**({} if self.api_key is None else {"api_key": self.api_key}), **extra}
        # The standard library's encoder: any number a client sends encodes (orjson
        # refuses integers past 64 bits, which made such a body a 500); the providers
        # service then refuses what is not a field of the vendor's.
        return json.dumps(fields, separators=(",", ":"))


#: The longest password an account may have (a sign-up's bound).
MAX_PASSWORD_CHARS = 1024


class Credentials(BaseModel):
    """A sign-in: a wrong password is a 401 whatever its length (a 400 for a short one
    would tell a prober something); one no account can have (empty, or longer than a
    sign-up allows) is refused as wrong without being hashed (accounts.login)."""

    model_config = ConfigDict(extra="forbid")
    email: Annotated[str, StringConstraints(min_length=3, max_length=320, strip_whitespace=True)]
    password: str


class NewAccount(Credentials):
    """A sign-up: the password must be at least 8 characters."""

    password: Annotated[str, StringConstraints(min_length=8, max_length=MAX_PASSWORD_CHARS)]


class NewApiKey(BaseModel):
    """`POST /account/api-keys`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    expires_at: int | None = Field(None, gt=0)
    monthly_request_limit: int | None = Field(None, ge=1)
    monthly_budget_usd: Decimal | None = Field(None, ge=0, lt=1_000_000)
    rpm: int | None = Field(None, ge=1, le=1_000_000)
    allowed_models: list[str] | None = Field(None, max_length=50)

    @field_validator("allowed_models")
    @classmethod
    def _names(cls, models: list[str] | None) -> list[str] | None:
        if models is not None and any(not m.strip() or len(m) > 128 for m in models):
            raise ValueError("each allowed model is a model id or strategy name of 1 to 128 characters")
        return models


class AccountChange(BaseModel):
    """`PATCH /account`: the account-wide monthly budget in USD; null removes it."""

    model_config = ConfigDict(extra="forbid")

    monthly_budget_usd: Decimal | None = Field(ge=0, lt=1_000_000)
