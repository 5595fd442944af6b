"""Account-facing calls of the gateway: who the caller is, and their provider keys.

Keys pass through to the providers service's vault; the gateway never stores
them and only ever sees the masked form coming back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import grpc
import orjson

from stepblend.v1 import billing_pb2, billing_pb2_grpc, providers_pb2, providers_pb2_grpc

from .apikeys import require_session
from .auth import Caller
from .caches import AccountStatus
from .deps import Deps
from .errors import ApiError, invalid, unauthenticated
from .rpc import Metadata, ServiceFailed, call
from .schemas import MAX_PASSWORD_CHARS

_TIMEOUT_S = 5.0
# The providers service names the field a key fails on first: `endpoint: must be ...`.
_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,63}): ")


async def load_status(billing: billing_pb2_grpc.BillingStub, metadata: Metadata, account_id: str) -> AccountStatus:
    try:
        response = await call(
            billing.GetAccount,
            billing_pb2.GetAccountRequest(account_id=account_id),
            service="billing",
            timeout_s=_TIMEOUT_S,
            metadata=metadata,
        )
    except ServiceFailed as exc:
        if exc.grpc_code == grpc.StatusCode.NOT_FOUND:
            return AccountStatus(account_id, exists=False, disabled=False, plan="")
        raise
    account = response.account
    return AccountStatus(account_id, exists=True, disabled=account.disabled, plan=account.plan)


async def load_connected(keys: providers_pb2_grpc.KeysStub, metadata: Metadata, account_id: str) -> tuple[str, ...]:
    response = await call(
        keys.Connected,
        providers_pb2.ConnectedRequest(account_id=account_id),
        service="providers",
        timeout_s=_TIMEOUT_S,
        metadata=metadata,
    )
    return tuple(response.providers)


async def authenticate(deps: Deps, authorization: str | None) -> Caller:
    """The caller: a valid JWT or API key of an existing, enabled account."""
    caller = await deps.verifier.caller(authorization)
    status = await deps.accounts.get(caller.account_id)
    if not status.exists:
        raise unauthenticated("The account of this token does not exist.")
    if status.disabled:
        raise unauthenticated("This account is disabled.")
    return caller


async def authenticate_session(deps: Deps, authorization: str | None, what: str) -> str:
    """The account id of a caller with the account's JWT: what managing it needs (SPEC.md §7)."""
    return require_session(await authenticate(deps, authorization), what)


async def account_summary(deps: Deps, account_id: str) -> dict[str, Any]:
    response = await call(
        deps.billing.GetAccount,
        billing_pb2.GetAccountRequest(account_id=account_id),
        service="billing",
        timeout_s=_TIMEOUT_S,
        metadata=deps.metadata,
    )
    account = response.account
    return {
        "object": "account",
        "account_id": account.account_id,
        "email": account.email,
        "plan": account.plan,
        "requests_this_month": account.requests_this_month,
        "monthly_limit": account.monthly_limit or None,
        "spend_this_month_usd": float(account.spend_this_month_usd or 0),
        "monthly_budget_usd": float(account.monthly_budget_usd) if account.monthly_budget_usd else None,
    }


async def set_budget(deps: Deps, account_id: str, budget: Decimal | None) -> dict[str, Any]:
    await deps.apikeys.set_budget(account_id, budget)
    return await account_summary(deps, account_id)


async def usage(deps: Deps, account_id: str, limit: int, api_key_id: str = "") -> dict[str, Any]:
    """This month's usage from billing's ledger: the newest `limit` requests, requests per day,
    and the month's count, limit and spend (as `GET /account` gives them)."""
    response = await call(
        deps.billing.ListUsage,
        billing_pb2.ListUsageRequest(account_id=account_id, limit=limit, api_key_id=api_key_id),
        service="billing",
        timeout_s=_TIMEOUT_S,
        metadata=deps.metadata,
        errors={grpc.StatusCode.NOT_FOUND: lambda _: unauthenticated("The account of this token does not exist.")},
    )
    account = response.account
    return {
        "object": "list",
        "data": [
            {
                "request_id": r.request_id,
                "created": r.created,
                "model": r.model,
                "provider": r.provider,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "cost_usd": float(r.cost_usd or 0),
                "latency_ms": r.latency_ms,
                "status": r.outcome,
                "error_code": r.error_code or None,
                "dialect": r.dialect,
                # Unknown (null) for requests from before the ledger recorded it.
                "stream": r.stream if r.HasField("stream") else None,
                "api_key_id": r.api_key_id or None,
            }
            for r in response.requests
        ],
        "daily": [{"date": d.date, "requests": d.requests} for d in response.daily],
        "month": response.month,
        "plan": account.plan,
        "requests_this_month": account.requests_this_month,
        "monthly_limit": account.monthly_limit or None,
        "spend_this_month_usd": float(account.spend_this_month_usd or 0),
    }


async def list_keys(deps: Deps, account_id: str) -> dict[str, Any]:
    response = await call(
        deps.keys.List,
        providers_pb2.ListKeysRequest(account_id=account_id),
        service="providers",
        timeout_s=_TIMEOUT_S,
        metadata=deps.metadata,
    )
    return {
        "object": "list",
        "data": [_shown(k.provider, k.masked_key, k.fields_json, updated_at=k.updated_at) for k in response.keys],
    }


def _shown(provider: str, masked_key: str, fields_json: str, **more: Any) -> dict[str, Any]:
    """A connected key as its owner sees it; a multi-field one also with `fields`
    (secret ones masked, the endpoint and deployments as stored)."""
    shown: dict[str, Any] = {"provider": provider, "masked_key": masked_key, **more}
    if fields_json:
        shown["fields"] = orjson.loads(fields_json)
    return shown


def _key_refused(details: str) -> ApiError:
    field = _FIELD.match(details)
    return invalid(details or "Invalid provider key.", field.group(1) if field else "provider")


async def put_key(deps: Deps, account_id: str, provider: str, api_key: str) -> dict[str, Any]:
    response = await call(
        deps.keys.Put,
        providers_pb2.PutKeyRequest(account_id=account_id, provider=provider, api_key=api_key),
        service="providers",
        timeout_s=_TIMEOUT_S,
        metadata=deps.metadata,
        errors={
            grpc.StatusCode.INVALID_ARGUMENT: _key_refused,
            # An endpoint the operator runs (the demo provider, a self-hosted server).
            grpc.StatusCode.PERMISSION_DENIED: lambda details: ApiError(
                403,
                f"Provider '{provider}' is run by this StepBlend's operator, who connects it for the accounts "
                "they choose; an account cannot connect it itself.",
                "permission_error",
                "provider_operator_only",
                "provider",
            ),
        },
    )
    deps.connected.drop(account_id)
    return _shown(provider, response.masked_key, response.fields_json)


async def delete_key(deps: Deps, account_id: str, provider: str) -> dict[str, Any]:
    response = await call(
        deps.keys.Delete,
        providers_pb2.DeleteKeyRequest(account_id=account_id, provider=provider),
        service="providers",
        timeout_s=_TIMEOUT_S,
        metadata=deps.metadata,
        errors={grpc.StatusCode.INVALID_ARGUMENT: lambda details: invalid(details or "Unknown provider.", "provider")},
    )
    deps.connected.drop(account_id)
    if not response.deleted:
        raise ApiError(404, f"No key is connected for provider '{provider}'.", code="key_not_found", param="provider")
    return {"provider": provider, "deleted": True}


def _too_many(failed: ServiceFailed) -> ApiError:
    """Billing's refusal of a sign-in over its rate limit, as a 429 with `retry-after`."""
    cause = failed.__cause__
    trailing = cause.trailing_metadata() if isinstance(cause, grpc.aio.AioRpcError) else None
    retry_after = dict(trailing or ()).get("retry-after", "1")
    return ApiError(
        429,
        "Too many sign-in attempts from this address or for this email; retry later.",
        "rate_limit_error",
        "rate_limit_exceeded",
        headers={"retry-after": str(retry_after)},
    )


async def signup(deps: Deps, email: str, password: str, client_address: str = "") -> dict[str, Any]:
    if not deps.settings.signup_enabled:
        raise ApiError(
            403, "Signup is turned off on this StepBlend; ask its operator for an account.", code="signup_disabled"
        )
    response: billing_pb2.CreateAccountResponse = await _sign_in_call(
        deps,
        deps.billing.CreateAccount,
        billing_pb2.CreateAccountRequest(email=email, password=password, client_address=client_address),
        {
            grpc.StatusCode.ALREADY_EXISTS: lambda _: ApiError(
                409, "An account with this email already exists.", code="account_exists", param="email"
            ),
            grpc.StatusCode.INVALID_ARGUMENT: lambda details: invalid(details or "Invalid signup.", param="email"),
        },
    )
    account_id = response.account.account_id
    return {"account_id": account_id, "token": deps.keyring.issue(account_id)}


async def login(deps: Deps, email: str, password: str, client_address: str = "") -> dict[str, Any]:
    if not 0 < len(password) <= MAX_PASSWORD_CHARS:
        raise unauthenticated("Wrong email or password.")  # no account has such a password
    response: billing_pb2.VerifyPasswordResponse = await _sign_in_call(
        deps,
        deps.billing.VerifyPassword,
        billing_pb2.VerifyPasswordRequest(email=email, password=password, client_address=client_address),
        {
            grpc.StatusCode.UNAUTHENTICATED: lambda _: unauthenticated("Wrong email or password."),
            grpc.StatusCode.NOT_FOUND: lambda _: unauthenticated("Wrong email or password."),
            grpc.StatusCode.PERMISSION_DENIED: lambda _: unauthenticated("This account is disabled."),
        },
    )
    if response.account.disabled:
        raise unauthenticated("This account is disabled.")
    return {"token": deps.keyring.issue(response.account.account_id)}


async def _sign_in_call(
    deps: Deps, method: Any, request: Any, errors: dict[grpc.StatusCode, Callable[[str], ApiError]]
) -> Any:
    """A sign-up or sign-in call to billing; over its rate limit, a 429 with `retry-after`."""
    try:
        return await call(
            method, request, service="billing", timeout_s=_TIMEOUT_S, metadata=deps.metadata, errors=errors
        )
    except ServiceFailed as failed:
        if failed.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise _too_many(failed) from failed
        raise
