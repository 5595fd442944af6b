"""Billing's tables: accounts and the usage ledger.

Billing owns this database; no other service reads it (ARCHITECTURE.md). The
SQL is portable (SQLite under `stepblend up`, PostgreSQL in production).

The ledger has one row per request, keyed by the request id, which makes every
write of a usage event idempotent. `month` (the UTC month the request was
admitted in) and `counted` (a provider answered, SPEC.md §3) are stored rather
than derived so that a month's count is one indexed query, and so that a
per-month counter for exact admission can later be settled from the same facts.
The ledger has no foreign key to accounts on purpose: an event is a fact that
already happened and is recorded whatever the state of the account.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import DateTime, Index
from sqlmodel import Field, SQLModel

from services.billing.money import Money

__all__ = ["Account", "LedgerEntry", "utcnow"]


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
    # "YYYY-MM", the UTC month of admitted_at: the request counts in that month.
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
    admitted_at: datetime = Field(sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
