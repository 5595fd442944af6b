"""Billing's tables: accounts, monthly counters, reservations and the usage ledger.

Billing owns this database; no other service reads it (ARCHITECTURE.md). The
SQL is portable (SQLite under `stepblend up`, PostgreSQL in production), and
the schema is created and changed only by the Alembic migrations in
`services/billing/migrations/` — these classes must match them.

How the tables relate (the admission state machine is described once, in
`admission.py`):
- `month_counters`: per account and UTC month, `used` (requests that count,
  SPEC.md §3) and `reserved` (admitted, not yet settled). Admission is one
  conditional UPDATE of this row, which is what makes the limit exact across
  replicas.
- `reservations`: one row per admitted request, keyed by request id, so that
  admitting twice reserves once and a usage event knows which month to settle.
- `api_keys`: an account's API keys (SPEC.md §7), by the keyed hash of the key
  (the gateway holds the pepper; the key itself is never here), with the key's
  limits; `key_month_counters` are the month counters of each key, as
  `month_counters` are the account's. Both counters also hold the month's spend
  and the worst-case cost reserved by requests in flight, which is what makes a
  budget a bound.
- `ledger_entries`: one row per request's usage event, keyed by request id,
  which makes settlement idempotent. `month` (the month the request counts in)
  and `counted` (a provider answered) are stored so a month's totals are one
  indexed query. No foreign key to accounts on purpose: an event is a fact that
  already happened and is recorded whatever the state of the account.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Column, DateTime, Index
from sqlmodel import Field, SQLModel

from services.billing.money import Money

__all__ = [
    "TABLES",
    "Account",
    "ApiKey",
    "AuthAttempt",
    "KeyMonthCounter",
    "Lease",
    "LeaseState",
    "LedgerEntry",
    "MonthCounter",
    "Reservation",
    "ReservationState",
    "utcnow",
]

# Billing's tables, the ones its migrations own.
TABLES = (
    "accounts",
    "month_counters",
    "reservations",
    "ledger_entries",
    "auth_attempts",
    "api_keys",
    "key_month_counters",
    "leases",
)


def utcnow() -> datetime:
    """Now, in UTC: every timestamp billing stores is UTC."""
    return datetime.now(UTC)


class Account(SQLModel, table=True):
    """A StepBlend account: who it is, its plan, and whether it may sign in."""

    __tablename__ = "accounts"

    account_id: str = Field(primary_key=True, max_length=36)
    # Stored lower-cased, so the unique index is case-insensitive on every database.
    email: str = Field(max_length=254, unique=True, index=True)
    plan: str = Field(max_length=32)
    # `scrypt$n$r$p$salt$hash`; None for accounts that only use tokens.
    password_hash: str | None = Field(default=None, max_length=255)
    disabled: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    # The account-wide monthly budget in USD; None: none.
    monthly_budget_usd: Decimal | None = Field(default=None, sa_type=Money)


class MonthCounter(SQLModel, table=True):
    """An account's requests in one UTC month: counted, and reserved in flight."""

    __tablename__ = "month_counters"

    account_id: str = Field(primary_key=True, max_length=64)
    month: str = Field(primary_key=True, max_length=7)  # "YYYY-MM"
    # BIGINT: an unlimited plan's month has no bound.
    used: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    reserved: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # What the counted requests cost (actual, else estimated), and the worst cases
    # reserved by those in flight: a budget holds `spent_usd + reserved_usd <= budget`.
    spent_usd: Decimal = Field(default=Decimal(0), sa_column=Column(Money, nullable=False, default=Decimal(0)))
    reserved_usd: Decimal = Field(default=Decimal(0), sa_column=Column(Money, nullable=False, default=Decimal(0)))


class KeyMonthCounter(SQLModel, table=True):
    """An API key's requests and spend in one UTC month, as `MonthCounter` for its account."""

    __tablename__ = "key_month_counters"

    key_id: str = Field(primary_key=True, max_length=64)
    month: str = Field(primary_key=True, max_length=7)
    used: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    reserved: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    spent_usd: Decimal = Field(default=Decimal(0), sa_column=Column(Money, nullable=False, default=Decimal(0)))
    reserved_usd: Decimal = Field(default=Decimal(0), sa_column=Column(Money, nullable=False, default=Decimal(0)))


class ApiKey(SQLModel, table=True):
    """An application's API key: its keyed hash, its limits, and whether it is revoked."""

    __tablename__ = "api_keys"

    key_id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(max_length=36, index=True)
    name: str = Field(max_length=100)
    # HMAC-SHA256 of the key under the gateway's pepper, hex: how a presented key is found.
    digest: str = Field(max_length=64, unique=True, index=True)
    hint: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    monthly_request_limit: int | None = Field(default=None, sa_type=BigInteger)
    monthly_budget_usd: Decimal | None = Field(default=None, sa_type=Money)
    rpm: int | None = Field(default=None)
    # Model ids and strategy names, comma-separated; "" allows any.
    allowed_models: str = Field(default="")


class ReservationState:
    """The states of a reservation; see `admission.py` for the transitions."""

    RESERVED = "reserved"  # admitted, holds one slot of its month
    COUNTED = "counted"  # settled: a provider answered, the request counts
    RELEASED = "released"  # settled: no provider answered, the slot is free again
    EXPIRED = "expired"  # no usage event came in time; the reaper freed the slot


class Reservation(SQLModel, table=True):
    """One admitted request: which account (and key) and month it holds a slot of, until when."""

    __tablename__ = "reservations"
    # Serves the reaper's scan for reservations past their expiry.
    # The first serves the reaper's scan; the second a key's rolling-minute count (rpm).
    __table_args__ = (
        Index("ix_reservations_state_expires", "state", "expires_at"),
        Index("ix_reservations_key_created", "api_key_id", "created_at"),
    )

    request_id: str = Field(primary_key=True, max_length=128)
    account_id: str = Field(max_length=64)
    month: str = Field(max_length=7)
    state: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    settled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The API key it came with (None: a JWT), and the worst case it holds of the budgets.
    api_key_id: str | None = Field(default=None, max_length=64)
    reserved_usd: Decimal = Field(default=Decimal(0), sa_column=Column(Money, nullable=False, default=Decimal(0)))


class LeaseState:
    """The states of a lease; see `leases.py` for the transitions."""

    ACTIVE = "active"  # its gateway admits from it; holds every slot it was granted
    RETURNED = "returned"  # its gateway gave the unused slots back; holds its requests not yet settled
    ENDED = "ended"  # expired (the reaper freed what it held) or returned and fully settled


class Lease(SQLModel, table=True):
    """Slots of an account's month (and of its key's) held by one gateway replica."""

    __tablename__ = "leases"
    # Serves the reaper's scan for leases past their expiry.
    __table_args__ = (
        Index("ix_leases_state_expires", "state", "expires_at"),
        # Serves a key's rolling minute (admission.minute_taken).
        Index("ix_leases_key_admit_until", "api_key_id", "admit_until"),
    )

    lease_id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(max_length=64)
    api_key_id: str | None = Field(default=None, max_length=64)
    month: str = Field(max_length=7)
    gateway: str = Field(max_length=128)
    state: str = Field(max_length=16)
    granted: int = Field(sa_column=Column(BigInteger, nullable=False))
    # The slots it holds on the counters' `reserved`: `granted` while active; once
    # returned, the requests its gateway admitted; `settled` once ended.
    holds: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Its requests whose usage event moved a held slot to `used`.
    settled: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # The same for money, where a budget bounds the account or its key: the USD it
    # holds on the counters' `reserved_usd` for its requests' worst cases, and the
    # worst cases of its settled requests (freed as each settled).
    usd_holds: Decimal = Field(
        default=Decimal(0), sa_column=Column(Money, nullable=False, default=Decimal(0), server_default="0")
    )
    usd_settled: Decimal = Field(
        default=Decimal(0), sa_column=Column(Money, nullable=False, default=Decimal(0), server_default="0")
    )
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    # Until when its gateway may admit from it (None for leases from before 0006).
    admit_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    ended_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class LedgerEntry(SQLModel, table=True):
    """One request's settled usage, written once from its usage event."""

    __tablename__ = "ledger_entries"
    # Serves "this account's requests in this month" and, by its prefix, any
    # lookup by account alone.
    __table_args__ = (Index("ix_ledger_entries_account_month", "account_id", "month"),)
    # Identifiers are bounded (and checked before insert); descriptive text from the
    # event is not, so that no event can fail on a length the database enforces.

    # The idempotency key: a redelivered or duplicated event finds its row here.
    request_id: str = Field(primary_key=True, max_length=128)
    # Wider than billing's own UUIDs: an event must not be refused over an id's format.
    account_id: str = Field(max_length=64)
    # "YYYY-MM", the UTC month the request was admitted in: it counts in that month.
    month: str = Field(max_length=7)
    outcome: str = Field(max_length=16)  # "completed" | "failed"
    counted: bool
    routed_model: str = Field(default="")
    provider: str = Field(default="")
    strategy: str = Field(default="")
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    estimated_cost_usd: Decimal = Field(default=Decimal(0), sa_type=Money)
    # None when the provider reported no usage.
    actual_cost_usd: Decimal | None = Field(default=None, sa_type=Money)
    catalog_version: str = Field(default="")
    latency_ms: int = Field(default=0)
    error_code: str = Field(default="")
    # The front door: "openai_chat", "anthropic_messages", ...
    dialect: str = Field(default="openai_chat", max_length=32, sa_column_kwargs={"server_default": "openai_chat"})
    # Whether it streamed; None for rows from before it was recorded.
    stream: bool | None = Field(default=None)
    # The API key it came with; None for a JWT.
    api_key_id: str | None = Field(default=None, max_length=64)
    # The lease it was admitted under (leases.py); None for one Admit of its own.
    lease_id: str | None = Field(default=None, max_length=64)
    # The worst case its lease held for it (a budget bounded it); None otherwise.
    lease_usd: Decimal | None = Field(default=None, sa_type=Money)
    admitted_at: datetime = Field(sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class AuthAttempt(SQLModel, table=True):
    """Sign-ups and sign-ins per client address or email in one fixed window
    (auth_limits.py): shared by every billing replica, so the limit holds across them."""

    __tablename__ = "auth_attempts"

    # "address:<ip>" or "email:<normalized email>".
    key: str = Field(primary_key=True, max_length=300)
    window_start: int = Field(primary_key=True, sa_type=BigInteger)
    attempts: int = Field(default=0)
