"""A mark on each profile whose stored cost to serve moved past its published scores.

Streaming stores such a change without publishing; the next sweep announces it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("republish", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.drop_column("republish")
