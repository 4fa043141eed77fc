"""Decisions unique per trigger and campaign, in that order, so a trigger's are found by index.

Every batch asks which of its triggers were decided already, by trigger id alone; with the
campaign first in the unique index that question scanned the whole table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("decisions") as batch_op:
        batch_op.drop_constraint("uq_decisions_campaign_trigger", type_="unique")
        batch_op.create_unique_constraint(
            "uq_decisions_trigger_campaign", ["trigger_event_id", "campaign_id"]
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("decisions") as batch_op:
        batch_op.drop_constraint("uq_decisions_trigger_campaign", type_="unique")
        batch_op.create_unique_constraint(
            "uq_decisions_campaign_trigger", ["campaign_id", "trigger_event_id"]
        )
