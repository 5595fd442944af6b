"""Leases (ARCHITECTURE.md, "admission without a call per request"): slots of an
account's month (and of its key's) that billing hands a gateway replica in bulk,
and the lease each settled request came from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the lease table; the ledger names each row's lease."""
    op.create_table(
        "leases",
        sa.Column("lease_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("gateway", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("granted", sa.BigInteger(), nullable=False),
        sa.Column("holds", sa.BigInteger(), nullable=False),
        sa.Column("settled", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("lease_id"),
    )
    op.create_index("ix_leases_state_expires", "leases", ["state", "expires_at"])
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("lease_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("lease_id")
    op.drop_index("ix_leases_state_expires", table_name="leases")
    op.drop_table("leases")
