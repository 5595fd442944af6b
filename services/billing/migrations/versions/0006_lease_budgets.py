"""Leases carry money and minutes: the USD of the account's and the key's budgets
a lease holds for its requests' worst cases, the worst case each settled request
held of its lease, and until when a lease admits (a key's rolling minute counts
its slots until a minute after that).

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
    """Add the lease's USD held and settled and its admission window's end, and the
    ledger row's share of the lease's USD."""
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("usd_holds", _MONEY, nullable=False, server_default="0"))
        batch.add_column(sa.Column("usd_settled", _MONEY, nullable=False, server_default="0"))
        batch.add_column(sa.Column("admit_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_leases_key_admit_until", "leases", ["api_key_id", "admit_until"])
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("lease_usd", _MONEY, nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("lease_usd")
    op.drop_index("ix_leases_key_admit_until", table_name="leases")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("admit_until")
        batch.drop_column("usd_settled")
        batch.drop_column("usd_holds")
