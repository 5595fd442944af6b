"""Telling every gateway that an account changed: `accounts.v1.changed` on JetStream.

A gateway caches an account's status (plan, disabled); on this event it drops
its cache entry, so a disabled account's tokens stop working at once. Each
change is its own message (`Nats-Msg-Id` unique per change, not per account:
two changes a minute apart must both be delivered, not deduplicated).
"""

from __future__ import annotations

import uuid
from typing import Protocol

from nats.js import JetStreamContext

from services.common import events, telemetry

__all__ = ["AccountEvents", "JetStreamAccountEvents"]


class AccountEvents(Protocol):
    """Where account changes are announced."""

    async def changed(self, account_id: str) -> None:
        """Announce that `account_id` changed; raises when the announcement was not stored."""


class JetStreamAccountEvents:
    """Publishes `accounts.v1.changed` and waits for the stream's ack."""

    # Well inside the gateway's 5 s call to billing: when NATS is down, the caller
    # hears that the change is saved but unannounced, not that billing timed out.
    def __init__(self, js: JetStreamContext, timeout_s: float = 2.0) -> None:
        self._js = js
        self._timeout_s = timeout_s

    async def changed(self, account_id: str) -> None:
        payload = events.AccountsChanged(account_id=account_id).model_dump_json().encode()
        # traceparent too: the gateways' cache drops are part of the change's trace.
        headers = telemetry.message_headers(uuid.uuid4().hex, events.ACCOUNTS_CHANGED)
        await self._js.publish(events.ACCOUNTS_CHANGED, payload, headers=headers, timeout=self._timeout_s)
