"""`stepblend.v1.ApiKeys` over gRPC: an account's API keys and its budget (SPEC.md §7).

Runs beside `Billing` on the same server and database, through the billing
servicer's call and announce helpers, so its status codes are the same:
INVALID_ARGUMENT for bad limits, a bad name or too many keys; NOT_FOUND for no
such account or key (Verify: no key with that digest); UNAVAILABLE when a
revocation is saved but the gateways could not be told (calling again is safe).
"""

from __future__ import annotations

import grpc
from sqlmodel import Session

from services.billing import accounts, apikeys
from services.billing.servicer import BillingServicer, render, usd
from stepblend.v1 import billing_pb2, billing_pb2_grpc

__all__ = ["SERVICE_NAME", "ApiKeysServicer"]

SERVICE_NAME = "stepblend.v1.ApiKeys"


class ApiKeysServicer(billing_pb2_grpc.ApiKeysServicer):
    def __init__(self, billing: BillingServicer) -> None:
        self._billing = billing

    async def Create(
        self, request: billing_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ApiKey:
        wire = request.limits
        now = self._billing.now()

        def create(session: Session) -> apikeys.KeyView:
            limits = apikeys.limits_from(
                expires_at=wire.expires_at,
                monthly_request_limit=wire.monthly_request_limit,
                monthly_budget_usd=wire.monthly_budget_usd,
                rpm=wire.rpm,
                allowed_models=list(wire.allowed_models),
            )
            return apikeys.create_key(
                session,
                account_id=request.account_id,
                name=request.name,
                digest=request.digest,
                hint=request.hint,
                limits=limits,
                now=now,
            )

        return render_key(await self._billing.call(context, create, write=True))

    async def List(
        self, request: billing_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListApiKeysResponse:
        now = self._billing.now()

        def read(session: Session) -> list[apikeys.KeyView]:
            return apikeys.list_keys(session, request.account_id, now)

        return billing_pb2.ListApiKeysResponse(keys=[render_key(k) for k in await self._billing.call(context, read)])

    async def Revoke(
        self, request: billing_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ApiKey:
        now = self._billing.now()

        def revoke(session: Session) -> apikeys.KeyView:
            return apikeys.revoke_key(session, account_id=request.account_id, key_id=request.id, now=now)

        view = await self._billing.call(context, revoke, write=True)
        # Every gateway drops the verifications it holds, so the key stops working there.
        await self._billing.announce(context, view.account_id)
        return render_key(view)

    async def Verify(
        self, request: billing_pb2.VerifyApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.VerifiedApiKey:
        now = self._billing.now()

        def find(session: Session) -> tuple[apikeys.KeyView, bool] | None:
            return apikeys.find_key(session, request.digest, now)

        found = await self._billing.call(context, find)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such API key")
            raise AssertionError("unreachable: abort raises")
        view, disabled = found
        return billing_pb2.VerifiedApiKey(key=render_key(view), account_disabled=disabled)

    async def SetBudget(
        self, request: billing_pb2.SetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Account:
        plans, now = self._billing.plans, self._billing.now()

        def set_budget(session: Session) -> accounts.AccountView:
            return accounts.set_budget(
                session, plans, account_id=request.account_id, budget_usd=request.monthly_budget_usd, now=now
            )

        view = await self._billing.call(context, set_budget, write=True)
        # Gateways end the account's leases, which carry no money: its requests are Admitted one by one.
        await self._billing.announce(context, view.account_id)
        return render(view)


def render_key(view: apikeys.KeyView) -> billing_pb2.ApiKey:
    limits = view.limits
    return billing_pb2.ApiKey(
        id=view.key_id,
        account_id=view.account_id,
        name=view.name,
        hint=view.hint,
        created=int(view.created_at.timestamp()),
        limits=billing_pb2.ApiKeyLimits(
            expires_at=int(limits.expires_at.timestamp()) if limits.expires_at else 0,
            monthly_request_limit=limits.monthly_request_limit or 0,
            monthly_budget_usd="" if limits.monthly_budget_usd is None else usd(limits.monthly_budget_usd),
            rpm=limits.rpm or 0,
            allowed_models=limits.allowed_models,
        ),
        last_used=int(view.last_used_at.timestamp()) if view.last_used_at else 0,
        revoked=view.revoked,
        requests_this_month=view.requests_this_month,
        spend_this_month_usd=usd(view.spend_this_month_usd),
    )
