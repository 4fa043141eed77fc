"""The timeline is the inbox: erased touchpoints' ids are kept apart in erased_events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 00:00:00
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
        "erased_events",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    # Ids the inbox holds that no timeline does are erased touchpoints (the consumer files
    # every touchpoint it applies): they stay no-ops when redelivered.
    op.execute(
        "INSERT INTO erased_events (event_id, erased_at) "
        "SELECT i.event_id, i.processed_at FROM inbox i "
        "WHERE NOT EXISTS (SELECT 1 FROM touchpoints t WHERE t.event_id = i.event_id)"
    )


def downgrade() -> None:
    """Revert this revision."""
    op.execute(
        "INSERT INTO inbox (event_id, processed_at) SELECT event_id, erased_at FROM erased_events "
        "WHERE event_id NOT IN (SELECT event_id FROM inbox)"
    )
    op.drop_table("erased_events")
