"""The read model's tables (no personal data: profile ids, tiers, channels, counts)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Float, Index, Integer, MetaData, String, Table

SERVICE = "console"

metadata = MetaData()

# Every tier move seen on tier-changes.v1; `at_s` (epoch seconds) lets both dialects bucket
# moves by period with integer arithmetic.
tier_moves = Table(
    "tier_moves",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("profile_id", String(64), nullable=False),
    Column("from_tier", String(1), nullable=True),
    Column("to_tier", String(1), nullable=False),
    Column("move", String(16), nullable=False),
    Column("predicted_value", Float, nullable=False),
    Column("at_s", BigInteger, nullable=False),
    Index("ix_tier_moves_profile", "profile_id", "at_s"),
    Index("ix_tier_moves_at", "at_s"),
)

# The latest scores of each profile, from the compacted scores.v1.
current_scores = Table(
    "current_scores",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("profile_version", Integer, nullable=False),
    Column("tier", String(1), nullable=False),
    Column("predicted_value", Float, nullable=False),
    Column("segment", String(32), nullable=True),
    Column("lifecycle", String(16), nullable=False),
    Column("at_s", BigInteger, nullable=False),
    Index("ix_current_scores_value", "predicted_value"),
)

# Channel habits of each profile, from the compacted profiles.v1.
profiles = Table(
    "profiles",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("lifecycle", String(16), nullable=False),
    Column("preferred_channel", String(16), nullable=True),
)

channel_counts = Table(
    "channel_counts",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("touchpoints", Integer, nullable=False),
)

merges = Table(
    "merges",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("survivor_id", String(64), nullable=False, index=True),
    Column("merged_id", String(64), nullable=False, index=True),
    Column("rule", String(200), nullable=False),
    Column("identifier_types", JSON, nullable=False),
    Column("identifier_fingerprints", JSON, nullable=False),
    Column("at_s", BigInteger, nullable=False),
)

# Profiles merged away or erased: events about them that arrive later are ignored.
retired = Table(
    "retired_profiles",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("reason", String(16), nullable=False),
)
