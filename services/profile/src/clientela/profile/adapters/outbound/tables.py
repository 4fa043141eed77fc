"""SQL tables of the profile service (no schema: the engine maps them into the service's)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table
from sqlalchemy.dialects.postgresql import JSONB

from clientela.shared.db import UtcDateTime
from clientela.shared.outbox import inbox_table, outbox_table


def _json() -> Any:
    return JSON().with_variant(JSONB(), "postgresql")


metadata = MetaData()

profiles = Table(
    "profiles",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("lifecycle", String(16), nullable=False),
    Column("state", _json(), nullable=False),
)

identifiers = Table(
    "identifiers",
    metadata,
    Column("id_type", String(64), primary_key=True),
    Column("id_value", String(320), primary_key=True),
    Column("profile_id", String(64), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
)

touchpoints = Table(
    "touchpoints",
    metadata,
    Column("event_id", String(128), primary_key=True),
    # Indexed through ix_touchpoints_timeline, whose leading column it is.
    Column("profile_id", String(64), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("agent_id", String(256), nullable=True),
    Column("payload", _json(), nullable=False),
    # Serves the timeline: one profile, newest first, keyset-paginated.
    Index("ix_touchpoints_timeline", "profile_id", "occurred_at", "event_id"),
)

inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
