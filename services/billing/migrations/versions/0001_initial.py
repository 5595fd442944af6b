"""Billing's initial schema: accounts, month counters, reservations, the usage ledger.

Revision ID: 0001
Revises:
Create Date: 2025-06-01

Money columns are exact on both backends: NUMERIC(20, 12) on PostgreSQL, a
whole number of 1e-12 USD on SQLite (see services/billing/money.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MONEY = sa.Numeric(20, 12).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    """Create every billing table."""
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_index("ix_accounts_email", "accounts", ["email"], unique=True)

    op.create_table(
        "month_counters",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "month"),
    )

    op.create_table(
        "reservations",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_reservations_state_expires", "reservations", ["state", "expires_at"])

    op.create_table(
        "ledger_entries",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("routed_model", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("estimated_cost_usd", _MONEY, nullable=False),
        sa.Column("actual_cost_usd", _MONEY, nullable=True),
        sa.Column("catalog_version", sa.String(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_ledger_entries_account_month", "ledger_entries", ["account_id", "month"])


def downgrade() -> None:
    """Drop every billing table."""
    op.drop_index("ix_ledger_entries_account_month", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index("ix_reservations_state_expires", table_name="reservations")
    op.drop_table("reservations")
    op.drop_table("month_counters")
    op.drop_index("ix_accounts_email", table_name="accounts")
    op.drop_table("accounts")
