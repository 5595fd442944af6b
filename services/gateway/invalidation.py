"""The change events that invalidate the gateway's caches, applied as they arrive:
`accounts.v1.changed` drops the account's status and every verified token and
ends the account's leases,
`keys.v1.changed` the account's connected providers. The caches never keep a
value whose load was under way when its event came (services.common.cache).

`applied` counts the events applied and `applied_past` waits for the next, for
whoever must know that a change has reached this replica (tests do).
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg

from services.common import events

from .deps import Deps

__all__ = ["Invalidations"]

log = logging.getLogger(__name__)


class Invalidations:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self.applied = 0
        self._next = asyncio.Event()

    async def subscribe(self) -> None:
        await self._deps.nats.subscribe(events.KEYS_CHANGED, cb=self.on_keys_changed)
        await self._deps.nats.subscribe(events.ACCOUNTS_CHANGED, cb=self.on_account_changed)

    async def applied_past(self, count: int) -> None:
        """Return once more than `count` events have been applied."""
        while self.applied <= count:
            await self._next.wait()

    def _applied(self) -> None:
        self.applied += 1
        self._next.set()
        self._next = asyncio.Event()

    async def on_keys_changed(self, msg: Msg) -> None:
        try:
            self._deps.connected.drop(events.KeysChanged.model_validate_json(msg.data).account_id)
        except ValueError:
            log.warning("ignored a malformed keys.v1.changed event")
        self._applied()

    async def on_account_changed(self, msg: Msg) -> None:
        try:
            account_id = events.AccountsChanged.model_validate_json(msg.data).account_id
        except ValueError:
            log.warning("ignored a malformed accounts.v1.changed event")
        else:
            self._deps.accounts.drop(account_id)
            if self._deps.leases is not None:
                self._deps.leases.close_account(account_id)
        self._deps.verifier.clear()
        self._applied()
