"""The ledger records each request's front door (dialect) and whether it streamed.

Every request before this revision came through OpenAI's chat completions (the only
door there was), so existing rows take that dialect; whether they streamed was not
recorded, so it stays unknown (NULL).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two columns."""
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("dialect", sa.String(length=32), nullable=False, server_default="openai_chat"))
        batch.add_column(sa.Column("stream", sa.Boolean(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("stream")
        batch.drop_column("dialect")
