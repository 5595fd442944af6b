"""API keys and budgets (SPEC.md §7): the keys and their month counters, an
account-wide budget, and the spend each month counter holds.

`month_counters.spent_usd` starts from the ledger: each month's counted requests
at their actual cost (the estimate where no usage was reported), the sum
`GET /account` shows, so a budget set after the upgrade bounds the whole month.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Exact USD: NUMERIC(20, 12), or whole 1e-12 USD units on SQLite (services/billing/money.py).
_MONEY = sa.Numeric(20, 12).with_variant(sa.BigInteger(), "sqlite")


def _spend_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("spent_usd", _MONEY, nullable=False, server_default="0"),
        sa.Column("reserved_usd", _MONEY, nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    """Create the key tables, add the budget and spend columns, backfill this spend."""
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("monthly_request_limit", sa.BigInteger(), nullable=True),
        sa.Column("monthly_budget_usd", _MONEY, nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("allowed_models", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_api_keys_account_id", "api_keys", ["account_id"])
    op.create_index("ix_api_keys_digest", "api_keys", ["digest"], unique=True)
    op.create_table(
        "key_month_counters",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        *_spend_columns(),
        sa.PrimaryKeyConstraint("key_id", "month"),
    )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("monthly_budget_usd", _MONEY, nullable=True))
    with op.batch_alter_table("month_counters") as batch:
        for column in _spend_columns():
            batch.add_column(column)
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("api_key_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reserved_usd", _MONEY, nullable=False, server_default="0"))
        batch.create_index("ix_reservations_key_created", ["api_key_id", "created_at"])
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("api_key_id", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE month_counters SET spent_usd = COALESCE(("
        " SELECT SUM(COALESCE(l.actual_cost_usd, l.estimated_cost_usd)) FROM ledger_entries l"
        " WHERE l.account_id = month_counters.account_id AND l.month = month_counters.month AND l.counted"
        "), 0)"
    )


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("api_key_id")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_index("ix_reservations_key_created")
        batch.drop_column("reserved_usd")
        batch.drop_column("api_key_id")
    with op.batch_alter_table("month_counters") as batch:
        batch.drop_column("reserved_usd")
        batch.drop_column("spent_usd")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("monthly_budget_usd")
    op.drop_table("key_month_counters")
    op.drop_index("ix_api_keys_digest", table_name="api_keys")
    op.drop_index("ix_api_keys_account_id", table_name="api_keys")
    op.drop_table("api_keys")
