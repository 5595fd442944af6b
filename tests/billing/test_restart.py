"""Billing keeps usage published while it was down: the durable consumer outlives it.

In its own module so that no other billing (test_service.py's) is running: every
billing on a NATS server shares the durable consumer "billing", as replicas do,
and another one would settle this test's event into its own database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js import JetStreamContext

from stepblend.v1 import billing_pb2
from tests.billing.conftest import BACKENDS, service_database_url, usage_event
from tests.billing.harness import Billing, eventually, make_settings, publish
from tests.support.procs import NatsServer


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_restart_loses_no_usage(
    nats_server: NatsServer, tmp_path: Path, js: JetStreamContext, request: pytest.FixtureRequest, backend: str
) -> None:
    url = service_database_url(request, backend)
    billing = await Billing(make_settings(tmp_path / "data", nats_server.url, url)).start()
    try:
        created = await billing.stub.CreateAccount(billing_pb2.CreateAccountRequest(email=f"restart-{backend}@x.io"))
        account_id = created.account.account_id
        await billing.stop()
        # Published while billing is down: the durable consumer keeps it.
        assert await publish(js, usage_event(account_id, actual_cost_usd="0.5"))
        assert backend != "sqlite" or (tmp_path / "data" / "billing.db").exists()
        await billing.start()  # same data dir, same port

        async def counted() -> bool:
            return (await billing.account(account_id)).requests_this_month == 1

        await eventually(counted)
        assert (await billing.account(account_id)).spend_this_month_usd == "0.5"
        await billing.stop()
    finally:
        if billing.task is not None and not billing.task.done():
            billing.task.cancel()
        await billing.close()
