"""The outbox's packed rows compressed with lz4 on PostgreSQL, where the server has it.

A batch's packed outbox row holds every event it announces (~650 KB for 500 touchpoints), so
it is always compressed out of line; pglz, the default, cost the database ~18 us of CPU per
touchpoint to write it, lz4 ~3 us, at about the same size. Only how new values are compressed
changes: rows written before stay readable as they are.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from clientela.shared.outbox import set_outbox_compression

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    set_outbox_compression(op.get_bind(), "lz4")


def downgrade() -> None:
    """Revert this revision."""
    set_outbox_compression(op.get_bind(), "default")
