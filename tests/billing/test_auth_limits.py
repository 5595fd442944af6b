"""Sign-ups and sign-ins are rate-limited per client address and per email, across
billing replicas, and password hashing never holds up admission or account reads.

Two billings share one database (SQLite and PostgreSQL); the attempts alternate
between them, so a limit that held per replica only would let twice as many through.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.billing import accounts, auth_limits
from services.billing.auth_limits import AuthLimits
from services.billing.options import BillingOptions
from stepblend.v1 import billing_pb2
from tests.billing.conftest import BACKENDS, service_database_url
from tests.billing.harness import Billing, FakeClock, make_settings
from tests.support.procs import NatsServer
from tests.support.waiting import eventually

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the start of a window


@pytest.fixture(params=BACKENDS)
async def replicas(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[tuple[Billing, Billing, FakeClock]]:
    url = service_database_url(request, request.param)
    data = tmp_path / "data"
    if not url:
        url = f"sqlite:///{data / 'billing.db'}"
    clock = FakeClock(NOW)
    options = BillingOptions(
        reservation_ttl=timedelta(minutes=15), auth_limits=AuthLimits(per_address=4, per_email=3, window_s=60)
    )
    first = await Billing(make_settings(data, nats_server.url, url), clock=clock, options=options).start()
    second = await Billing(make_settings(data, nats_server.url, url), clock=clock, options=options).start()
    yield first, second, clock
    for billing in (first, second):
        await billing.stop()
        await billing.close()


async def _sign_in(billing: Billing, email: str, address: str, password: str = "wrong horse") -> grpc.StatusCode:
    try:
        await billing.stub.VerifyPassword(
            billing_pb2.VerifyPasswordRequest(email=email, password=password, client_address=address)
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_an_email_is_limited_across_replicas_and_signup_shares_it(
    replicas: tuple[Billing, Billing, FakeClock],
) -> None:
    first, second, clock = replicas
    email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    await first.stub.CreateAccount(billing_pb2.CreateAccountRequest(email=email, password="correct horse"))
    # The sign-up was one attempt; two wrong passwords, alternating replicas, make three.
    codes = [await _sign_in(billing, email, f"198.51.100.{i}") for i, billing in enumerate((second, first))]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await second.stub.VerifyPassword(
            billing_pb2.VerifyPasswordRequest(email=email, password="correct horse", client_address="198.51.100.9")
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(refused.value.trailing_metadata() or ())["retry-after"] == "60"
    # Probing sign-up for the email is limited by the same counter.
    with pytest.raises(grpc.aio.AioRpcError) as probe:
        await first.stub.CreateAccount(
            billing_pb2.CreateAccountRequest(email=email, password="another one", client_address="198.51.100.10")
        )
    assert probe.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The next window lets the right password in again.
    clock.now += 60
    assert await _sign_in(first, email, "198.51.100.11", password="correct horse") == grpc.StatusCode.OK


async def test_an_address_is_limited_whatever_the_emails(replicas: tuple[Billing, Billing, FakeClock]) -> None:
    first, second, clock = replicas
    address = f"203.0.113.{uuid.uuid4().int % 250}"
    clock.now += 30
    codes = [
        await _sign_in(billing, f"guess-{i}-{uuid.uuid4().hex[:6]}@example.com", address)
        for i, billing in enumerate([first, second] * 3)
    ]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 4 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    # Another address is not held back by this one.
    assert await _sign_in(first, "someone@example.com", "192.0.2.1") == grpc.StatusCode.UNAUTHENTICATED


async def test_a_sign_in_flood_does_not_hold_up_account_reads(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every password check is held until the read is answered: a read that waited on the
    # hashing queue would wait for all twelve, so it would never be answered (and time out).
    release, checking = threading.Event(), threading.Event()
    charged: list[None] = []
    real_verify, real_charge = accounts.verify_password, auth_limits.charge

    def held_verify(stored: str, password: str) -> bool:
        checking.set()
        if not release.wait(30):  # only if the test failed to release it: never hang the suite
            release.set()
        return real_verify(stored, password)

    def counted_charge(*args: Any, **kwargs: Any) -> int:
        retry_after = real_charge(*args, **kwargs)
        charged.append(None)  # this sign-in goes on to the hashing queue
        return retry_after

    monkeypatch.setattr(accounts, "verify_password", held_verify)
    monkeypatch.setattr(auth_limits, "charge", counted_charge)
    options = BillingOptions(auth_limits=AuthLimits(per_address=0, per_email=0), password_hashing_threads=1)
    billing = await Billing(make_settings(tmp_path / "data", nats_server.url), options=options).start()
    try:
        account = (
            await billing.stub.CreateAccount(billing_pb2.CreateAccountRequest(email="reader@example.com"))
        ).account
        finished: list[str] = []

        async def sign_in(i: int) -> None:
            await _sign_in(billing, f"flood-{i}@example.com", "")
            finished.append("sign-in")

        async def read() -> None:
            await billing.stub.GetAccount(billing_pb2.GetAccountRequest(account_id=account.account_id))
            finished.append("read")

        flood = [asyncio.ensure_future(sign_in(i)) for i in range(12)]
        try:
            # The flood is queued on the hashing pool, its one thread busy, before the read is asked
            # (held checks on threads that other calls need would stop the charges here already).
            await eventually(lambda: len(charged) == 12 and checking.is_set(), what="all 12 sign-ins queued")
            await asyncio.wait_for(read(), 10)
            before_release = list(finished)
        finally:
            release.set()
            await asyncio.gather(*flood)
        # The read was answered while every check still waited: it did not wait for the queue.
        assert before_release == ["read"], finished
        assert finished == ["read"] + ["sign-in"] * 12
    finally:
        await billing.stop()
        await billing.close()
