"""Leases carry money: the USD of the account's and the key's budgets a lease
holds for its requests' worst cases, and the worst case each settled request
held of its lease.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MONEY = sa.Numeric(20, 12).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    """Add the lease's USD held and settled, and the ledger row's share of it."""
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("usd_holds", _MONEY, nullable=False, server_default="0"))
        batch.add_column(sa.Column("usd_settled", _MONEY, nullable=False, server_default="0"))
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("lease_usd", _MONEY, nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("lease_usd")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("usd_settled")
        batch.drop_column("usd_holds")
