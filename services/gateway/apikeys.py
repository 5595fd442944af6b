"""API keys (SPEC.md §7) at the gateway: making one, finding the caller of one,
and the account's calls to manage them and its budget.

A key is `sb-` and 43 random URL-safe characters (256 bits). The gateway keeps
the pepper (STEPBLEND_API_KEY_PEPPER, like the JWT secret) and sends billing only
the key's HMAC-SHA256 under it and a hint (`sb-…abcd`): a copy of billing's
database, or its logs, cannot be turned back into a working key. The key itself
is in the creating response and nowhere else.

Which calls a key may make, and which models, is decided here and in the
routing call (`allowed`); its monthly limits, budget and rpm by billing's Admit,
exactly, across replicas.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from decimal import Decimal
from typing import Any

import grpc

from services.common.vocab import parse_strategy
from stepblend.v1 import billing_pb2, billing_pb2_grpc

from .auth import API_KEY_PREFIX, Caller, Grant
from .errors import ApiError, invalid, unauthenticated
from .rpc import Metadata, call
from .schemas import NewApiKey

__all__ = ["ApiKeyBook", "allowed", "digest", "make_key", "render", "require_session"]

_TIMEOUT_S = 5.0
_KEY_BYTES = 32


class ApiKeyBook:
    """Makes keys and verifies presented ones against billing."""

    def __init__(self, pepper: str, stub: billing_pb2_grpc.ApiKeysStub, metadata: Metadata) -> None:
        self._pepper = pepper.encode()
        self._stub = stub
        self._metadata = metadata

    @property
    def enabled(self) -> bool:
        return bool(self._pepper)

    def digest(self, key: str) -> str:
        return digest(self._pepper, key)

    async def load(self, key: str) -> tuple[Caller, float]:
        """The caller of a presented key, and until when (its expiry); 401 for a bad one."""
        response = await call(
            self._stub.Verify,
            billing_pb2.VerifyApiKeyRequest(digest=self.digest(key)),
            service="billing",
            timeout_s=_TIMEOUT_S,
            metadata=self._metadata,
            errors={grpc.StatusCode.NOT_FOUND: lambda _: unauthenticated("Invalid API key.")},
        )
        found = response.key
        if found.revoked:
            raise unauthenticated("This API key has been revoked.")
        expires_at = found.limits.expires_at or math.inf
        if expires_at <= time.time():
            raise unauthenticated("This API key has expired.")
        if response.account_disabled:
            raise unauthenticated("This account is disabled.")
        grant = Grant(found.id, frozenset(found.limits.allowed_models))
        return Caller(found.account_id, grant), expires_at

    async def create(self, account_id: str, body: NewApiKey) -> dict[str, Any]:
        if not self.enabled:
            raise ApiError(
                503,
                "API keys are not enabled on this StepBlend: its operator has not set STEPBLEND_API_KEY_PEPPER.",
                "api_error",
                "api_keys_disabled",
            )
        key, key_digest, key_hint = make_key(self._pepper)
        limits = billing_pb2.ApiKeyLimits(
            expires_at=body.expires_at or 0,
            monthly_request_limit=body.monthly_request_limit or 0,
            monthly_budget_usd="" if body.monthly_budget_usd is None else str(body.monthly_budget_usd),
            rpm=body.rpm or 0,
            allowed_models=[m.strip() for m in body.allowed_models or []],
        )
        request = billing_pb2.CreateApiKeyRequest(
            account_id=account_id, name=body.name, digest=key_digest, hint=key_hint, limits=limits
        )
        created = await self._call(self._stub.Create, request)
        return {**render(created), "key": key}

    async def list(self, account_id: str) -> dict[str, Any]:
        response = await self._call(self._stub.List, billing_pb2.ListApiKeysRequest(account_id=account_id))
        return {"object": "list", "data": [render(k) for k in response.keys]}

    async def revoke(self, account_id: str, key_id: str) -> dict[str, Any]:
        revoked = await self._call(self._stub.Revoke, billing_pb2.RevokeApiKeyRequest(account_id=account_id, id=key_id))
        return render(revoked)

    async def set_budget(self, account_id: str, budget: Decimal | None) -> billing_pb2.Account:
        request = billing_pb2.SetBudgetRequest(
            account_id=account_id, monthly_budget_usd="" if budget is None else str(budget)
        )
        account: billing_pb2.Account = await self._call(self._stub.SetBudget, request)
        return account

    async def _call(self, method: Any, request: Any) -> Any:
        return await call(
            method,
            request,
            service="billing",
            timeout_s=_TIMEOUT_S,
            metadata=self._metadata,
            errors={
                grpc.StatusCode.INVALID_ARGUMENT: lambda details: invalid(details or "Invalid API key request."),
                grpc.StatusCode.NOT_FOUND: lambda details: ApiError(
                    404, "No such API key in this account.", code="api_key_not_found"
                ),
            },
        )


def make_key(pepper: bytes) -> tuple[str, str, str]:
    """A new key, its digest under `pepper`, and its hint."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)
    return key, digest(pepper, key), f"{API_KEY_PREFIX}…{key[-4:]}"


def digest(pepper: bytes, key: str) -> str:
    """The keyed hash billing stores and finds a key by."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def render(key: billing_pb2.ApiKey) -> dict[str, Any]:
    limits = key.limits
    return {
        "object": "api_key",
        "id": key.id,
        "name": key.name,
        "hint": key.hint,
        "created": key.created,
        "expires_at": limits.expires_at or None,
        "last_used": key.last_used or None,
        "monthly_request_limit": limits.monthly_request_limit or None,
        "monthly_budget_usd": float(limits.monthly_budget_usd) if limits.monthly_budget_usd else None,
        "rpm": limits.rpm or None,
        "allowed_models": list(limits.allowed_models) or None,
        "requests_this_month": key.requests_this_month,
        "spend_this_month_usd": float(key.spend_this_month_usd or 0),
        "revoked": key.revoked,
    }


def require_session(caller: Caller, what: str) -> str:
    """The account id, for calls only the account's own JWT may make (SPEC.md §7)."""
    if caller.grant is not None:
        raise ApiError(
            403,
            f"An API key cannot {what}: sign in and use the account's JWT.",
            "permission_error",
            "jwt_required",
        )
    return caller.account_id


def allowed(grant: Grant | None, model: str, override: str = "") -> frozenset[str]:
    """Refuse a strategy the key does not allow, or any model id when it lists none
    (403 model_not_allowed); the model names the router may then consider (empty: any).

    `gpt-4o` in the list allows that model on any provider, `openai:gpt-4o` on that
    one; a strategy in the list allows it, ranking only the listed models if any are,
    and only by a listed strategy (`override`, the request's stepblend_strategy).
    Whether a model id the client names is one of those, by its id or an alias, the
    router decides (its catalog knows the aliases): it refuses with model_not_allowed.
    """
    if grant is None or not grant.allowed_models:
        return frozenset()
    strategies = {parse_strategy(name) for name in grant.allowed_models} - {None}
    models = frozenset(name for name in grant.allowed_models if parse_strategy(name) is None)
    wanted = model.strip()
    strategy = parse_strategy(wanted)
    refused = not models if strategy is None else strategy not in strategies
    if refused:
        raise _not_allowed(wanted, grant)
    if strategy is not None and override.strip() and parse_strategy(override) not in strategies:
        raise _not_allowed(override.strip(), grant, "stepblend_strategy")
    return models


def _not_allowed(model: str, grant: Grant, param: str = "model") -> ApiError:
    shown = model if len(model) <= 80 else model[:80] + "..."
    return ApiError(
        403,
        f"This API key may not use '{shown}'; it allows {', '.join(sorted(grant.allowed_models))}.",
        "permission_error",
        "model_not_allowed",
        param,
    )
