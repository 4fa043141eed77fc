"""The published scores (`profile_scores.state`) kept as text instead of json.

PostgreSQL parses a json value on every write (about 11 us for a customer's scores, on every
scored profile), and the state is only ever read whole, as the bytes that were published.
The column is rewritten once; its content stays the same text.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 23:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.alter_column(
            "state",
            existing_type=sa.JSON(),
            type_=sa.Text(),
            existing_nullable=False,
            postgresql_using="state::text",
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.alter_column(
            "state",
            existing_type=sa.Text(),
            type_=sa.JSON(),
            existing_nullable=False,
            postgresql_using="state::json",
        )
