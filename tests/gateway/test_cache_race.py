"""An account change that arrives while the gateway is loading that account's
status: the value loaded before the change may answer the request that was
already waiting for it, but is never kept for later ones (services.common.cache).

Billing's answer is held on the wire (tests/gateway/proxy.py) until the change
has reached the gateway, so the race happens every time, not by luck."""

from __future__ import annotations

import asyncio

import pytest

from stepblend.v1 import billing_pb2
from tests.gateway.conftest import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def set_disabled(gateway: Stack, account_id: str, disabled: bool) -> None:
    """Through billing itself, which announces it (accounts.v1.changed); returns once
    this gateway has applied the event."""
    applied = gateway.invalidations.applied
    await gateway.billing.SetDisabled(
        billing_pb2.SetDisabledRequest(account_id=account_id, disabled=disabled), timeout=5
    )
    await asyncio.wait_for(gateway.invalidations.applied_past(applied), 10)


async def test_an_account_disabled_while_its_status_loads_is_refused_afterwards(gateway: Stack) -> None:
    account_id, headers = await gateway.account()
    assert (await gateway.http.get("/v1/models", headers=headers)).status_code == 200
    await set_disabled(gateway, account_id, False)  # the cached status is dropped: the next request loads it
    gateway.billing_proxy.hold()
    try:
        before = asyncio.create_task(gateway.http.get("/v1/models", headers=headers))
        # Billing has answered "enabled"; the answer waits on the wire.
        await asyncio.wait_for(gateway.billing_proxy.answer_held.wait(), 10)
        await set_disabled(gateway, account_id, True)
    finally:
        gateway.billing_proxy.release()
    assert (await before).status_code == 200  # asked before the change
    after = await gateway.http.get("/v1/models", headers=headers)
    assert after.status_code == 401
    assert after.json()["error"]["message"] == "This account is disabled."
