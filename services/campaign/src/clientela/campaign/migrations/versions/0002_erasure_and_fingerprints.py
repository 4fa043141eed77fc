"""Fingerprints of the contact view, trigger expiry index, erasure markers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 23:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("profile_fp", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("scores_fp", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("habits", sa.String(length=256), nullable=True))
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.create_index("ix_triggers_status_created", ["status", "created_at"], unique=False)
    op.create_table(
        "erased_profiles",
        sa.Column("marker", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("marker"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("erased_profiles")
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.drop_index("ix_triggers_status_created")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("habits")
        batch_op.drop_column("scores_fp")
        batch_op.drop_column("profile_fp")
