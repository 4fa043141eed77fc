"""The outbox's event bytes compressed with lz4 rather than pglz (PostgreSQL built with lz4).

A batch's events are one packed row of about a megabyte, written once, read once by the relay
and deleted; pglz spent more backend CPU on it than the scores' upsert. Rows already there
keep their compression; nothing else changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 18:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from clientela.shared.outbox import set_outbox_compression

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    set_outbox_compression(op.get_bind(), "lz4")


def downgrade() -> None:
    """Revert this revision."""
    set_outbox_compression(op.get_bind(), "default")
