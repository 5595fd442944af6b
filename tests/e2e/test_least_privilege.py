"""Least privilege inside `stepblend up` (SPEC.md §12): each service holds credentials
for its own job only. A compromised router cannot forge billable usage on NATS, and
the gateway — the one service facing the internet — cannot change a plan, disable an
account or connect an operator's vendor over internal gRPC."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import grpc
import nats
import pytest

from services.common import events
from stepblend import natsauth
from stepblend.v1 import billing_pb2, billing_pb2_grpc, providers_pb2, providers_pb2_grpc
from tests.e2e.conftest import Account, System

TOKEN_HEADER = "x-stepblend-internal-token"


def services(system: System) -> dict[str, str]:
    found: dict[str, str] = json.loads((system.data_dir / "services.json").read_text())
    return found


def nats_url(system: System, user: str) -> str:
    users = json.loads((system.data_dir / natsauth.PASSWORDS_FILE).read_text())
    address = services(system)["nats"].rpartition("@")[2]
    return natsauth.url_for(address, user, users)


async def _publish_as(url: str, subject: str) -> list[Exception]:
    """Publish once as the URL's user; the errors the server sent back."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    client = await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0)
    try:
        await client.publish(subject, b"{}")
        await client.flush()
        # The server reports a violation asynchronously: a round trip later it has.
        await client.flush()
        for _ in range(50):
            if errors:
                break
            await asyncio.sleep(0.02)
    finally:
        await client.close()
    return errors


async def _stored(system: System, subject: str) -> bool:
    operator = await nats.connect(services(system)["nats"])
    try:
        js = operator.jetstream()
        try:
            await js.get_last_msg(events.USAGE_STREAM, subject)
        except nats.js.errors.NotFoundError:
            return False
        return True
    finally:
        await operator.close()


@pytest.mark.parametrize("service", ["router", "providers", "billing"])
def test_only_the_gateway_may_publish_usage(system: System, service: str) -> None:
    forged = f"usage.v1.forged-{uuid.uuid4().hex[:8]}"
    errors = asyncio.run(_publish_as(nats_url(system, service), forged))
    assert any("permissions violation" in str(e).lower() for e in errors), errors
    assert asyncio.run(_stored(system, forged)) is False
    # The gateway's own credentials are what usage events are published with.
    genuine = f"usage.v1.genuine-{uuid.uuid4().hex[:8]}"
    assert asyncio.run(_publish_as(nats_url(system, "gateway"), genuine)) == []
    assert asyncio.run(_stored(system, genuine)) is True


@pytest.mark.parametrize(
    ("service", "subject"),
    [("gateway", events.KEYS_CHANGED), ("gateway", events.ACCOUNTS_CHANGED), ("router", events.ACCOUNTS_CHANGED)],
)
def test_no_service_publishes_another_ones_changes(system: System, service: str, subject: str) -> None:
    errors = asyncio.run(_publish_as(nats_url(system, service), subject))
    assert any("permissions violation" in str(e).lower() for e in errors), errors


async def _destroy_as(url: str) -> tuple[bool, bool, bool]:
    """Whether the URL's user may delete a stream, purge the usage stream and delete a
    stored event. Each try is harmless if allowed (a stream that does not exist; a
    subject with no events; a sequence never used): a refused call gets no answer, an
    allowed one does."""
    client = await nats.connect(url, error_cb=_ignore, max_reconnect_attempts=0)
    js = client.jetstream(timeout=1)
    try:
        try:
            await js.delete_stream(f"NO-SUCH-STREAM-{uuid.uuid4().hex[:8]}")
        except nats.js.errors.NotFoundError:
            may_delete = True
        except nats.errors.TimeoutError:
            may_delete = False
        try:
            await js.purge_stream(events.USAGE_STREAM, subject=f"usage.v1.none-{uuid.uuid4().hex[:8]}")
            may_purge = True
        except nats.errors.TimeoutError:
            may_purge = False
        try:
            await js.delete_msg(events.USAGE_STREAM, 2**62)
            may_delete_event = True
        except nats.js.errors.APIError:
            may_delete_event = True  # answered: no such event
        except nats.errors.TimeoutError:
            may_delete_event = False
    finally:
        await client.close()
    return may_delete, may_purge, may_delete_event


async def _ignore(exc: Exception) -> None:
    pass


def test_no_service_may_delete_or_purge_stored_events(system: System) -> None:
    for service in natsauth.SERVICES:
        assert asyncio.run(_destroy_as(nats_url(system, service))) == (False, False, False), service
    # The operator may: the same calls are answered.
    assert asyncio.run(_destroy_as(services(system)["nats"])) == (True, True, True)


def test_the_natsauth_subjects_are_the_events_subjects() -> None:
    assert [natsauth.USAGE] == events.USAGE_SUBJECTS
    assert (natsauth.KEYS, natsauth.ACCOUNTS) == (events.KEYS_CHANGED, events.ACCOUNTS_CHANGED)
    assert natsauth.DEAD_LETTERS == events.DEAD_LETTER_PREFIX + ">"


def _call(system: System, token: str, service: str, method: str, request: Any) -> grpc.StatusCode:
    with grpc.insecure_channel(services(system)[service]) as channel:
        stub: Any = (billing_pb2_grpc.BillingStub if service == "billing" else providers_pb2_grpc.KeysStub)(channel)
        try:
            getattr(stub, method)(request, metadata=((TOKEN_HEADER, token),), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_the_gateways_token_cannot_do_the_operators_work(system: System, account: Account) -> None:
    gateway = (system.data_dir / "gateway_token").read_text().strip()
    operator = (system.data_dir / "internal_token").read_text().strip()
    refused = {
        ("billing", "SetPlan"): billing_pb2.SetPlanRequest(email=account.email, plan="enterprise"),
        ("billing", "SetDisabled"): billing_pb2.SetDisabledRequest(email=account.email, disabled=True),
        # Refused before the request is read: the account need not exist.
        ("providers", "PutOperatorKey"): providers_pb2.PutKeyRequest(
            account_id="any", provider="local", api_key="sk-local-0123456789"
        ),
    }
    for (service, method), request in refused.items():
        assert _call(system, gateway, service, method, request) == grpc.StatusCode.PERMISSION_DENIED, method
    # What the gateway does for its users still works with its token...
    lookup = billing_pb2.GetAccountRequest(email=account.email)
    assert _call(system, gateway, "billing", "GetAccount", lookup) == grpc.StatusCode.OK
    # ...a token nobody holds is not a caller at all...
    assert _call(system, "forged-token", "billing", "GetAccount", lookup) == grpc.StatusCode.UNAUTHENTICATED
    # ...and the operator's token (the CLI's) may change a plan.
    upgrade = billing_pb2.SetPlanRequest(email=account.email, plan="pro")
    assert _call(system, operator, "billing", "SetPlan", upgrade) == grpc.StatusCode.OK
