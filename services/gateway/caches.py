"""What the gateway remembers between requests: each account's status and its
connected providers, so the hot path makes no extra gRPC calls.

They are `services.common.cache.TtlCache`s (single flight; a value dropped while
its load was in flight is not kept): entries live for a short TTL and are dropped
at once by the `accounts.v1.changed` and `keys.v1.changed` events, so a disabled
account or a new key takes effect within one event delivery on every gateway
replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from services.common.vocab import Strategy, strategy_spellings
from stepblend.v1 import router_pb2, router_pb2_grpc

from .rpc import Metadata, call

# The names /models lists: the hyphenated spelling of each strategy.
STRATEGIES = tuple(strategy_spellings(s)[1] for s in Strategy)
_MODELS_TTL_S = 60.0


@dataclass(frozen=True)
class AccountStatus:
    account_id: str
    exists: bool
    disabled: bool
    plan: str


class ModelList:
    """GET /models: the strategies and every catalog model, cached briefly."""

    def __init__(self) -> None:
        self._body: dict[str, Any] | None = None
        self._until = 0.0

    async def get(self, router: router_pb2_grpc.RouterStub, metadata: Metadata) -> dict[str, Any]:
        if self._body is not None and time.monotonic() < self._until:
            return self._body
        response = await call(
            router.ListModels, router_pb2.ListModelsRequest(), service="router", timeout_s=5.0, metadata=metadata
        )
        data: list[dict[str, Any]] = [
            {"id": name, "object": "model", "created": 0, "owned_by": "stepblend"} for name in STRATEGIES
        ]
        seen: set[str] = set()
        for model in response.models:
            if model.id not in seen:
                seen.add(model.id)
                listed = {"id": model.id, "object": "model", "created": 0, "owned_by": model.provider}
                if model.kind:
                    # An embedding model (POST /embeddings); chat models carry no type.
                    listed["type"] = model.kind
                    listed["dimensions"] = model.dimensions
                data.append(listed)
        self._body = {"object": "list", "data": data}
        self._until = time.monotonic() + _MODELS_TTL_S
        return self._body
