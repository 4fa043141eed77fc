"""The scoring schema as the service created it before migrations.

Revision ID: 0001
Create Date: 2026-11-22 20:57:29.516342
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "inbox",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_processed_at"), ["processed_at"], unique=False)

    op.create_table(
        "model_parameters",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "profile_scores",
        sa.Column("profile_id", sa.String(length=64), nullable=False),
        sa.Column("profile_version", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("tier_seq", sa.BigInteger(), nullable=False),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.String(length=1), nullable=False),
        sa.Column("predicted_value", sa.Double(), nullable=False),
        sa.Column("at_risk", sa.Boolean(), nullable=False),
        sa.Column("purchase_days", sa.Integer(), nullable=False),
        sa.Column("purchase_count", sa.Integer(), nullable=False),
        sa.Column("first_purchase_s", sa.Double(), nullable=True),
        sa.Column("last_purchase_s", sa.Double(), nullable=True),
        sa.Column("total_spend", sa.Double(), nullable=False),
        sa.Column("cost_to_serve", sa.Double(), nullable=False),
        sa.Column("prospect_features", sa.JSON(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("profile_id"),
    )
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profile_scores_tier"), ["tier"], unique=False)

    op.create_table(
        "tier_history",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("profile_id", sa.String(length=64), nullable=False),
        sa.Column("profile_version", sa.BigInteger(), nullable=False),
        sa.Column("from_tier", sa.String(length=1), nullable=True),
        sa.Column("to_tier", sa.String(length=1), nullable=False),
        sa.Column("move", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tier_history_profile_id"), ["profile_id"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tier_history_profile_id"))

    op.drop_table("tier_history")
    with op.batch_alter_table("profile_scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_scores_tier"))

    op.drop_table("profile_scores")
    op.drop_table("outbox")
    op.drop_table("model_parameters")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_processed_at"))

    op.drop_table("inbox")
