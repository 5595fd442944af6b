"""`stepblend.v1.Billing` over gRPC: parse the request, call one domain function, render.

Status codes:
- INVALID_ARGUMENT: malformed email, unknown plan, a call without its key, an
  Admit without ids;
- ALREADY_EXISTS: CreateAccount for an email that has an account;
- NOT_FOUND: GetAccount, SetPlan, SetDisabled or ListUsage for no account;
- UNAUTHENTICATED: VerifyPassword with an email and password that do not match
  (the same answer for an unknown email);
- PERMISSION_DENIED: VerifyPassword for a disabled account (password right);
- UNAVAILABLE: SetPlan or SetDisabled saved the change but could not announce
  it to the gateways; calling again is safe and announces it.
- RESOURCE_EXHAUSTED: CreateAccount or VerifyPassword over the per-address or
  per-email rate limit (auth_limits.py), or with the password hashing queue
  full; the `retry-after` trailing metadata says in how many seconds to retry.

Password hashing (scrypt, tens of milliseconds of CPU each) runs on a small pool
of its own with a bounded queue, so a flood of sign-ins never delays Admit or
GetAccount, which run elsewhere.
Admit never fails for a refusal: `allowed=false` with a reason is an answer.

Database calls are synchronous, so they run in worker threads and the event
loop keeps serving other calls and the usage consumer. Admit runs on the
writer's threads and held connections (writer.py), the rest in ORM sessions;
writes are retried on transient lock errors (`db.retrying`); each is safe to
repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import NoReturn, TypeVar

import grpc
from sqlalchemy import Connection, Engine
from sqlmodel import Session

from services.billing import accounts, admission, auth_limits, leases, usage
from services.billing.db import retrying, write_session
from services.billing.money import parse_usd
from services.billing.months import Clock, moment, month_key, month_start
from services.billing.notify import AccountEvents
from services.billing.options import BillingOptions
from services.billing.plans import PlanBook
from services.billing.writer import Writer
from stepblend.v1 import billing_pb2, billing_pb2_grpc

__all__ = ["SERVICE_NAME", "BillingServicer"]

log = logging.getLogger(__name__)

SERVICE_NAME = "stepblend.v1.Billing"

T = TypeVar("T")

# Sign-ins waiting for the hashing pool, per thread, before more are refused.
_HASHES_QUEUED_PER_THREAD = 16

_STATUS: dict[type[Exception], grpc.StatusCode] = {
    accounts.InvalidAccountRequest: grpc.StatusCode.INVALID_ARGUMENT,
    accounts.AccountExists: grpc.StatusCode.ALREADY_EXISTS,
    accounts.AccountNotFound: grpc.StatusCode.NOT_FOUND,
    accounts.InvalidCredentials: grpc.StatusCode.UNAUTHENTICATED,
    accounts.AccountDisabled: grpc.StatusCode.PERMISSION_DENIED,
    admission.InvalidAdmission: grpc.StatusCode.INVALID_ARGUMENT,
}
_ERRORS = (accounts.AccountError, admission.InvalidAdmission)


class BillingServicer(billing_pb2_grpc.BillingServicer):
    """Accounts and admission over gRPC, backed by billing's database and the plans in force."""

    def __init__(
        self,
        engine: Engine,
        writer: Writer,
        plans: PlanBook,
        account_events: AccountEvents,
        *,
        options: BillingOptions | None = None,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._plans = plans
        self._events = account_events
        self._options = options or BillingOptions()
        self._clock = clock
        threads = self._options.password_hashing_threads
        self._hashing = ThreadPoolExecutor(threads, thread_name_prefix="billing-passwords")
        self._hashing_queue = 0
        self._hashing_limit = threads * _HASHES_QUEUED_PER_THREAD

    @property
    def plans(self) -> PlanBook:
        return self._plans

    async def CreateAccount(
        self, request: billing_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreateAccountResponse:
        def create(session: Session) -> accounts.AccountView:
            return accounts.create_account(
                session, self._plans, email=request.email, plan=request.plan, password=request.password
            )

        if request.password:
            await self._charge_sign_in(context, request.client_address, request.email)
        view = await self.call(context, create, write=True, hashing=bool(request.password))
        return billing_pb2.CreateAccountResponse(account=render(view))

    async def GetAccount(
        self, request: billing_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GetAccountResponse:
        account_id, email = _key(request)

        def get(session: Session) -> accounts.AccountView:
            return accounts.get_account(session, self._plans, account_id=account_id, email=email, now=self.now())

        view = await self.call(context, get)
        return billing_pb2.GetAccountResponse(account=render(view))

    async def VerifyPassword(
        self, request: billing_pb2.VerifyPasswordRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.VerifyPasswordResponse:
        def verify(session: Session) -> accounts.AccountView:
            return accounts.authenticate(
                session, self._plans, email=request.email, password=request.password, now=self.now()
            )

        await self._charge_sign_in(context, request.client_address, request.email)
        view = await self.call(context, verify, hashing=True)
        return billing_pb2.VerifyPasswordResponse(account=render(view))

    async def SetPlan(
        self, request: billing_pb2.SetPlanRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SetPlanResponse:
        account_id, email = _key(request)

        def set_plan(session: Session) -> accounts.AccountView:
            return accounts.set_plan(
                session, self._plans, account_id=account_id, email=email, plan=request.plan, now=self.now()
            )

        view = await self.call(context, set_plan, write=True)
        await self.announce(context, view.account_id)
        return billing_pb2.SetPlanResponse(account=render(view))

    async def SetDisabled(
        self, request: billing_pb2.SetDisabledRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SetDisabledResponse:
        account_id, email = _key(request)

        def set_disabled(session: Session) -> accounts.AccountView:
            return accounts.set_disabled(
                session, self._plans, account_id=account_id, email=email, disabled=request.disabled, now=self.now()
            )

        view = await self.call(context, set_disabled, write=True)
        await self.announce(context, view.account_id)
        return billing_pb2.SetDisabledResponse(account=render(view))

    async def Admit(
        self, request: billing_pb2.AdmitRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.AdmitResponse:
        account_id, request_id = request.account_id, request.request_id
        try:
            admission.check(account_id, request_id)
        except admission.InvalidAdmission as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            worst = tuple(parse_usd(cost) for cost in request.worst_cost_usd)
        except ValueError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"worst_cost_usd: {exc}")
        now, ttl, key_id = self.now(), self._options.reservation_ttl, request.api_key_id

        def admit(connection: Connection) -> admission.Admission:
            return admission.admit(
                connection,
                self._plans,
                account_id=account_id,
                request_id=request_id,
                now=now,
                ttl=ttl,
                api_key_id=key_id,
                worst_costs=worst,
            )

        answer = await self._writer.run(admit)
        left = answer.budget_left_usd
        return billing_pb2.AdmitResponse(
            allowed=answer.allowed,
            plan=answer.plan,
            limit=answer.limit or 0,
            remaining=answer.remaining,
            reason=answer.reason,
            month_start=month_start(answer.month),
            fits=answer.fits,
            retry_after_s=answer.retry_after_s,
            budget_owner=answer.budget_owner,
            budget_left_usd="" if left is None else usd(left),
        )

    async def Lease(
        self, request: billing_pb2.LeaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.LeaseResponse:
        try:
            admission.check(request.account_id, request.lease_id)
        except admission.InvalidAdmission as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            worst = parse_usd(request.worst_cost_usd) if request.worst_cost_usd else None
        except ValueError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"worst_cost_usd: {exc}")
        now, options = self.now(), self._options

        def lease(connection: Connection) -> leases.LeaseGrant:
            return leases.grant(
                connection,
                self._plans,
                lease_id=request.lease_id,
                account_id=request.account_id,
                api_key_id=request.api_key_id,
                gateway=request.gateway,
                want=max(1, request.want),
                now=now,
                window=options.lease_window,
                ttl=options.reservation_ttl,
                worst=worst,
            )

        answer = await self._writer.run(lease)
        return billing_pb2.LeaseResponse(
            granted=answer.granted,
            reason=answer.reason,
            per_request=answer.per_request,
            plan=answer.plan,
            limit=answer.limit or 0,
            remaining=answer.remaining,
            month_start=month_start(answer.month),
            admit_until=answer.admit_until.timestamp() if answer.admit_until else 0.0,
            granted_usd="" if answer.usd is None else usd(answer.usd),
        )

    async def ReturnLease(
        self, request: billing_pb2.ReturnLeaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ReturnLeaseResponse:
        now = self.now()
        try:
            admitted_usd = parse_usd(request.admitted_usd) if request.admitted_usd else None
        except ValueError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"admitted_usd: {exc}")

        def give_back(connection: Connection) -> int:
            return leases.give_back(
                connection,
                lease_id=request.lease_id,
                account_id=request.account_id,
                admitted=request.admitted,
                now=now,
                admitted_usd=admitted_usd,
            )

        return billing_pb2.ReturnLeaseResponse(freed=await self._writer.run(give_back))

    async def ListUsage(
        self, request: billing_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListUsageResponse:
        now = self.now()
        month = month_key(now)
        limit = request.limit or usage.DEFAULT_LIMIT

        def read(session: Session) -> tuple[accounts.AccountView, list[usage.UsageRow], list[usage.DayCount]]:
            view = accounts.get_account(session, self._plans, account_id=request.account_id, now=now)
            return (
                view,
                usage.recent_requests(session, view.account_id, month, limit, request.api_key_id),
                usage.daily_counts(session, view.account_id, now),
            )

        view, rows, days = await self.call(context, read)
        return billing_pb2.ListUsageResponse(
            account=render(view),
            requests=[_render_usage(row) for row in rows],
            daily=[billing_pb2.DailyUsage(date=d.day.isoformat(), requests=d.requests) for d in days],
            month=month,
        )

    def now(self) -> datetime:
        return moment(self._clock())

    async def _charge_sign_in(self, context: grpc.aio.ServicerContext, address: str, email: str) -> None:
        """Count a sign-up or sign-in against its address's and email's limits; over
        either, abort RESOURCE_EXHAUSTED with `retry-after`."""

        def charge(session: Session) -> int:
            retry_after = auth_limits.charge(
                session.connection(), self._options.auth_limits, address=address, email=email, now=self._clock()
            )
            session.commit()
            return retry_after

        retry_after = await self.call(context, charge, write=True)
        if retry_after:
            context.set_trailing_metadata((("retry-after", str(retry_after)),))
            await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "too many sign-in attempts; retry later")

    async def call(
        self,
        context: grpc.aio.ServicerContext,
        work: Callable[[Session], T],
        *,
        write: bool = False,
        hashing: bool = False,
    ) -> T:
        def attempt() -> T:
            with write_session(self._engine) if write else Session(self._engine) as session:
                return work(session)

        try:
            if not hashing:
                return await asyncio.to_thread(retrying, attempt)
            if self._hashing_queue >= self._hashing_limit:
                context.set_trailing_metadata((("retry-after", "1"),))
                await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "too many sign-ins at once; retry shortly")
            self._hashing_queue += 1
            try:
                return await asyncio.get_running_loop().run_in_executor(self._hashing, retrying, attempt)
            finally:
                self._hashing_queue -= 1
        except _ERRORS as exc:
            await abort(context, _STATUS.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT), str(exc))

    async def announce(self, context: grpc.aio.ServicerContext, account_id: str) -> None:
        try:
            await self._events.changed(account_id)
        except Exception:
            log.warning("announcing an account change failed", exc_info=True, extra={"account_id": account_id})
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "the change is saved, but the gateways could not be told (NATS); call again to announce it",
            )


def _key(
    request: billing_pb2.GetAccountRequest | billing_pb2.SetPlanRequest | billing_pb2.SetDisabledRequest,
) -> tuple[str, str]:
    key = request.WhichOneof("key")
    return (request.account_id if key == "account_id" else "", request.email if key == "email" else "")


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


def render(view: accounts.AccountView) -> billing_pb2.Account:
    return billing_pb2.Account(
        account_id=view.account_id,
        email=view.email,
        plan=view.plan,
        disabled=view.disabled,
        requests_this_month=view.requests_this_month,
        monthly_limit=view.monthly_limit or 0,
        spend_this_month_usd=usd(view.spend_this_month_usd),
        monthly_budget_usd="" if view.monthly_budget_usd is None else usd(view.monthly_budget_usd),
    )


def _render_usage(row: usage.UsageRow) -> billing_pb2.UsageRecord:
    return billing_pb2.UsageRecord(
        request_id=row.request_id,
        created=int(row.admitted_at.timestamp()),
        model=row.model,
        provider=row.provider,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost_usd=usd(row.cost_usd),
        latency_ms=row.latency_ms,
        outcome=row.outcome,
        counted=row.counted,
        error_code=row.error_code,
        dialect=row.dialect,
        stream=row.stream,
        api_key_id=row.api_key_id or "",
    )


def usd(amount: Decimal) -> str:
    # Plain notation without trailing zeros: "0.000042", "12.5", "0" (never "4.2E-5").
    return format(amount.normalize(), "f")
