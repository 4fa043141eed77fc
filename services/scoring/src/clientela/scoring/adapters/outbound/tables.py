"""Tables of the scoring service (no schema: the engine maps them into the service's schema)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Double, MetaData, String, Table

from clientela.shared.db import UtcDateTime
from clientela.shared.outbox import inbox_table, outbox_table

SERVICE = "scoring"

metadata = MetaData()

scores = Table(
    "scores",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("profile_version", BigInteger, nullable=False),
    Column("lifecycle", String(16), nullable=False),
    Column("tier", String(1), nullable=False, index=True),
    Column("predicted_value", Double, nullable=False),
    # The full ScoresUpdated payload: money and reasons as JSON, so no Decimal column is needed.
    Column("state", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

tier_history = Table(
    "tier_history",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("profile_id", String(64), nullable=False, index=True),
    Column("profile_version", BigInteger, nullable=False),
    Column("from_tier", String(1), nullable=True),
    Column("to_tier", String(1), nullable=False),
    Column("move", String(16), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
)

inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
