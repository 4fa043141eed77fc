"""profile_scores updated in place: no index on the tier, room on each page for updates.

No query looks a tier up (the tier summary reads every row), yet the index cost an entry on
every insert and update, and, being on a column that changes, kept updates from being HOT.
With the page fill factor (PostgreSQL) a re-score or kept change usually writes its new row
version on the same page with no new index entry. Pages already full fill up to the factor
only when rewritten (VACUUM FULL); new pages follow it at once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_scores_tier")
    if op.get_bind().dialect.name == "postgresql":
        # tables.FILLFACTOR when this revision was written; a revision does not follow it.
        op.execute("ALTER TABLE profile_scores SET (fillfactor = 85)")


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE profile_scores RESET (fillfactor)")
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.create_index("ix_profile_scores_tier", ["tier"], unique=False)
