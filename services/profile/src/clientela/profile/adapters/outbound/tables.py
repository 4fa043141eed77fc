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
    # json, not jsonb: the snapshot is only ever read whole, and jsonb costs about twice the
    # server CPU to write and to read back as text (measured: docs/adr/0011).
    Column("state", JSON, nullable=False),
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
    # No index of its own: every query reads one profile's timeline (the index below), and
    # each index costs an insert per touchpoint on the hot path.
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("agent_id", String(256), nullable=True),
    # json for the same reason as profiles.state: written once per touchpoint, read whole.
    Column("payload", JSON, nullable=False),
    # Serves the timeline: one profile, newest first, keyset-paginated.
    Index("ix_touchpoints_timeline", "profile_id", "occurred_at", "event_id"),
)

# A merged profile id forwards to its survivor, so lookups by the old id keep working.
profile_forwards = Table(
    "profile_forwards",
    metadata,
    Column("merged_id", String(64), primary_key=True),
    Column("survivor_id", String(64), nullable=False, index=True),
    Column("merged_at", UtcDateTime, nullable=False),
)

# Pairs an admin split apart (profile_a < profile_b): never merged again automatically.
separations = Table(
    "separations",
    metadata,
    Column("profile_a", String(64), primary_key=True),
    Column("profile_b", String(64), primary_key=True, index=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# Merges the rules refused, for review; identifiers as fingerprints only.
identity_conflicts = Table(
    "identity_conflicts",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("other_profile_id", String(64), primary_key=True),
    Column("profile_id", String(64), nullable=False, index=True),
    Column("reason", String(128), nullable=False),
    Column("identifier_types", _json(), nullable=False),
    Column("identifier_fingerprints", _json(), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Consent stated through the API: part of a profile's history, replayed by rebuilds.
consent_updates = Table(
    "consent_updates",
    metadata,
    Column("update_id", String(128), primary_key=True),
    Column("profile_id", String(64), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(256), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
)

# Receipts of erasures: no personal data, only what was removed and when.
erasures = Table(
    "erasures",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("request_id", String(256), nullable=False),
    Column("erased_at", UtcDateTime, nullable=False),
    Column("identifiers_removed", Integer, nullable=False),
    Column("touchpoints_removed", Integer, nullable=False),
    Column("forwards_removed", Integer, nullable=False),
)

# Ids of erased touchpoints (no personal data): the timeline is the consumer's inbox, so
# these keep a redelivered erased touchpoint a no-op.
erased_events = Table(
    "erased_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("erased_at", UtcDateTime, nullable=False),
)

# Written by nothing since the timeline became the inbox; kept for the shared outbox relay,
# which prunes it.
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
