"""Markers of erased profiles (keyed hashes), so an in-flight change cannot bring one back;
a fingerprint of each profile's scoring inputs, so an irrelevant change is not scored again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 23:00:00.000000
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
    op.create_table(
        "erased_profiles",
        sa.Column("marker", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("marker"),
    )
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inputs_digest", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.drop_column("inputs_digest")
    op.drop_table("erased_profiles")
