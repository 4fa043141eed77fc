"""The potential each prospect's scores published, held apart from the published state.

A prospect is published again only when its potential moves past a tolerance from this one;
streaming reads it with the stored counters, never the state. Filled from the stored state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 23:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("potential", sa.Double(), nullable=True))
    # Only prospects publish a potential.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE profile_scores SET potential = (state->>'potential')::float8 "
            "WHERE tier = 'P' AND state->>'potential' IS NOT NULL"
        )
    else:
        op.execute(
            "UPDATE profile_scores SET potential = json_extract(state, '$.potential') "
            "WHERE tier = 'P'"
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.drop_column("potential")
