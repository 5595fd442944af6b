"""`stepblend.v1.Billing` over gRPC: parse the request, call one domain function, render.

Status codes:
- INVALID_ARGUMENT: malformed email, unknown plan, GetAccount without a key;
- ALREADY_EXISTS: CreateAccount for an email that has an account;
- NOT_FOUND: GetAccount for no account.
Database calls are synchronous, so they run in a worker thread and the event loop
keeps serving other calls and the usage consumer.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import NoReturn

import grpc
from sqlalchemy import Engine
from sqlmodel import Session

from services.billing import accounts
from services.billing.plans import PlanBook
from stepblend.v1 import billing_pb2, billing_pb2_grpc

__all__ = ["SERVICE_NAME", "BillingServicer"]

SERVICE_NAME = "stepblend.v1.Billing"

_STATUS: dict[type[accounts.AccountError], grpc.StatusCode] = {
    accounts.InvalidAccountRequest: grpc.StatusCode.INVALID_ARGUMENT,
    accounts.AccountExists: grpc.StatusCode.ALREADY_EXISTS,
    accounts.AccountNotFound: grpc.StatusCode.NOT_FOUND,
}


class BillingServicer(billing_pb2_grpc.BillingServicer):
    """Accounts over gRPC, backed by billing's database and the plans in force."""

    def __init__(self, engine: Engine, plans: PlanBook) -> None:
        self._engine = engine
        self._plans = plans

    async def CreateAccount(
        self, request: billing_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreateAccountResponse:
        def create() -> accounts.AccountView:
            with Session(self._engine) as session:
                return accounts.create_account(
                    session, self._plans, email=request.email, plan=request.plan, password=request.password
                )

        try:
            view = await asyncio.to_thread(create)
        except accounts.AccountError as exc:
            await _abort(context, exc)
        return billing_pb2.CreateAccountResponse(account=_render(view))

    async def GetAccount(
        self, request: billing_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GetAccountResponse:
        key = request.WhichOneof("key")

        def get() -> accounts.AccountView:
            with Session(self._engine) as session:
                return accounts.get_account(
                    session,
                    self._plans,
                    account_id=request.account_id if key == "account_id" else "",
                    email=request.email if key == "email" else "",
                )

        try:
            view = await asyncio.to_thread(get)
        except accounts.AccountError as exc:
            await _abort(context, exc)
        return billing_pb2.GetAccountResponse(account=_render(view))


async def _abort(context: grpc.aio.ServicerContext, exc: accounts.AccountError) -> NoReturn:
    await context.abort(_STATUS.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT), str(exc))
    raise AssertionError("unreachable: abort raises")


def _render(view: accounts.AccountView) -> billing_pb2.Account:
    return billing_pb2.Account(
        account_id=view.account_id,
        email=view.email,
        plan=view.plan,
        disabled=view.disabled,
        requests_this_month=view.requests_this_month,
        monthly_limit=view.monthly_limit or 0,
        spend_this_month_usd=_usd(view.spend_this_month_usd),
    )


def _usd(amount: Decimal) -> str:
    # Plain notation without trailing zeros: "0.000042", "12.5", "0" (never "4.2E-5").
    return format(amount.normalize(), "f")
