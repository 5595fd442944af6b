"""A running billing for tests: `serve()` in a task, a gRPC client, and the gateway's publish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import JetStreamContext
from sqlalchemy import func
from sqlmodel import Session, col, select

from services.billing.db import database_url, make_engine
from services.billing.main import serve
from services.billing.models import LedgerEntry
from services.billing.months import Clock
from services.billing.options import BillingOptions
from services.common import events
from services.common.config import Settings
from services.common.grpcio import channel
from stepblend.v1 import billing_pb2, billing_pb2_grpc
from tests.support.procs import free_port

TOKEN = "billing-test-token"


def make_settings(data_dir: Path, nats_url: str, database_url: str = "", plans_file: str = "") -> Settings:
    # from_env, then every field billing reads pinned, so the caller's environment cannot leak in.
    return Settings.from_env().model_copy(
        update=dict(
            data_dir=data_dir,
            database_url=database_url,
            plans_file=plans_file,
            nats_url=nats_url,
            internal_token=TOKEN,
            host="127.0.0.1",
            port=free_port(),
        )
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class Billing:
    """A running `serve()` and a client of it."""

    def __init__(self, settings: Settings, clock: Clock = time.time, options: BillingOptions | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.options = options or BillingOptions()
        self.address = f"{settings.host}:{settings.port}"
        self.task: asyncio.Task[None] | None = None
        self.channel = channel(self.address, TOKEN)
        self.stub = billing_pb2_grpc.BillingStub(self.channel)

    async def start(self) -> Billing:
        self.task = asyncio.create_task(serve(self.settings, options=self.options, clock=self.clock))
        health = health_pb2_grpc.HealthStub(self.channel)

        async def serving() -> bool:
            assert self.task is not None and not self.task.done(), "serve() ended early"
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(service="stepblend.v1.Billing"), timeout=1)
            except grpc.aio.AioRpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        await eventually(serving)
        return self

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 30)

    async def close(self) -> None:
        await self.channel.close()

    async def account(self, account_id: str) -> billing_pb2.Account:
        reply = await self.stub.GetAccount(billing_pb2.GetAccountRequest(account_id=account_id))
        account: billing_pb2.Account = reply.account
        return account

    def rows(self, account_id: str) -> int:
        engine = make_engine(database_url(self.settings))
        try:
            with Session(engine) as session:
                return session.exec(
                    select(func.count()).select_from(LedgerEntry).where(col(LedgerEntry.account_id) == account_id)
                ).one()
        finally:
            engine.dispose()


class FakeClock:
    """A clock a test sets: `clock.now = …` moves billing's time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def publish(js: JetStreamContext, event: events.UsageEvent, msg_id: str | None = None) -> bool:
    """Publish as the gateway does; True when the stream stored it, False for a duplicate."""
    subject = events.USAGE_COMPLETED if event.outcome == "completed" else events.USAGE_FAILED
    ack = await js.publish(
        subject, event.model_dump_json().encode(), headers={events.MSG_ID: msg_id or event.request_id}
    )
    return not ack.duplicate
