"""The events on the bus: subjects, streams and their typed payloads.

Every fact that happened is a JetStream message with `Nats-Msg-Id` set, so that a
publisher's retry is dropped by the stream's duplicate window and consumers can be
idempotent by id. Payloads are JSON; readers ignore unknown fields.
"""

from __future__ import annotations

from typing import Literal

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from pydantic import BaseModel, ConfigDict

from services.common.tls import InternalTls
from services.common.vocab import Outcome

USAGE_STREAM = "USAGE"
USAGE_SUBJECTS = ["usage.v1.>"]
USAGE_COMPLETED = "usage.v1.completed"
USAGE_FAILED = "usage.v1.failed"

CHANGES_STREAM = "CHANGES"
# Events a consumer could not process after many tries, kept for an operator:
# `deadletter.` + the event's own subject, in the DEADLETTER stream.
DEAD_LETTER_PREFIX = "deadletter."
DEAD_LETTER_STREAM = "DEADLETTER"
KEYS_CHANGED = "keys.v1.changed"
ACCOUNTS_CHANGED = "accounts.v1.changed"

MSG_ID = "Nats-Msg-Id"


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AttemptRecord(_Event):
    provider: str
    model: str
    # An outcome this version does not know makes the event invalid (it is dead-lettered,
    # not folded as if it meant nothing).
    outcome: Outcome
    status: int = 0
    latency_ms: int = 0
    ttft_ms: int = 0
    detail: str = ""


class UsageEvent(_Event):
    """One request's outcome, published by the gateway when it ends."""

    request_id: str
    account_id: str
    outcome: Literal["completed", "failed"]
    # Unix seconds when the request was admitted: it counts in that month.
    admitted_at: float
    strategy_used: str = ""
    routed_model: str = ""
    # The `model` the client asked for (a model id or a strategy name): what a request
    # that no provider answered is listed under.
    requested_model: str = ""
    provider: str = ""
    stream: bool = False
    # The front door it came through: "openai_chat", "anthropic_messages", ...
    dialect: str = "openai_chat"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    # Decimal strings in USD; actual is None when the provider reported no usage.
    estimated_cost_usd: str = "0"
    actual_cost_usd: str | None = None
    catalog_version: str = ""
    latency_ms: int = 0
    ttft_ms: int = 0
    error_code: str = ""
    # Whether a provider answered: SPEC.md §3 counts a request only then.
    provider_answered: bool = False
    attempts: list[AttemptRecord] = []
    client_request_id: str = ""
    # The API key the request came with (SPEC.md §7); "" for a JWT.
    api_key_id: str = ""
    # The lease it was admitted under (billing's leases.py); "" for one Admit of its own.
    lease_id: str = ""
    # The worst case (decimal USD) it took of its lease's money, where a budget bounds
    # the account or its key; None otherwise.
    lease_usd: str | None = None


class KeysChanged(_Event):
    account_id: str
    provider: str


class AccountsChanged(_Event):
    account_id: str


async def connect(url: str, name: str, tls: InternalTls | None = None) -> NATS:
    """Connect with reconnects forever: a NATS outage is waited out, not fatal. TLS,
    verifying the server against the internal CA, when `tls` has one."""
    context = tls.client_context() if tls else None
    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        **({"tls": context} if context else {}),
    )


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create or update the streams; every service may call this at start.

    `replicas` (the services pass STEPBLEND_NATS_STREAM_REPLICAS) is the number of
    JetStream servers holding each stream: 3 in a cluster, so losing one server
    loses no event.
    """
    configs = [
        StreamConfig(
            name=USAGE_STREAM,
            subjects=USAGE_SUBJECTS,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30 * 24 * 3600,
            duplicate_window=120,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=CHANGES_STREAM,
            subjects=[KEYS_CHANGED, ACCOUNTS_CHANGED],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=24 * 3600,
            duplicate_window=120,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=DEAD_LETTER_STREAM,
            subjects=[f"{DEAD_LETTER_PREFIX}>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30 * 24 * 3600,
            num_replicas=replicas,
        ),
    ]
    for config in configs:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
