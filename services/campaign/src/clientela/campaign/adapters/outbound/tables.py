"""SQL tables of the campaign service (schema-less; mapped into the service schema on PG)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)

from clientela.shared.db import UtcDateTime
from clientela.shared.outbox import inbox_table, outbox_table

# Money is stored in millionths of the base currency: exact, summable on both dialects.
MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class CampaignTables:
    """Every table the service owns, on one MetaData."""

    metadata: MetaData
    contacts: Table
    triggers: Table
    decisions: Table
    evidence: Table
    spend: Table
    campaigns: Table
    erased: Table
    inbox: Table
    outbox: Table


def campaign_tables() -> CampaignTables:
    """Declare the service's tables on a fresh MetaData."""
    metadata = MetaData()
    contacts = Table(
        "contacts",
        metadata,
        Column("profile_id", String(64), primary_key=True),
        # Profile facts and scores arrive on different topics, possibly at different
        # instances: each group has its own version and is written on its own.
        Column("version", Integer, nullable=False),
        Column("profile", JSON, nullable=False),
        Column("scored_version", Integer, nullable=False),
        Column("scores", JSON, nullable=False),
        Column("last_seen_at", UtcDateTime(), nullable=True, index=True),
        Column("complained_at", UtcDateTime(), nullable=True),
        Column("updated_at", UtcDateTime(), nullable=False),
        # Digests of the facts decisions read: a new version with the same digest only
        # advances the version, it does not rewrite the row's facts.
        Column("profile_fp", String(16), nullable=True),
        Column("scores_fp", String(16), nullable=True),
        # Channel habits ("email=0.3;web=0.7"): they move with most touchpoints, so they are
        # kept apart from the profile facts and advanced with the version.
        Column("habits", String(256), nullable=True),
    )
    triggers = Table(
        "triggers",
        metadata,
        Column("trigger_event_id", String(128), primary_key=True),
        Column("profile_id", String(64), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("payload", JSON, nullable=False),
        Column("status", String(16), nullable=False),
        Column("not_before", UtcDateTime(), nullable=True),
        Column("episode_days", Integer, nullable=True),
        Column("episode_at", UtcDateTime(), nullable=True),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("decided_at", UtcDateTime(), nullable=True),
        # Looked up by profile when its data arrives, among the pending ones only.
        Index("ix_triggers_profile_status", "profile_id", "status"),
        Index("ix_triggers_status_not_before", "status", "not_before"),
        Index("ix_triggers_episode", "profile_id", "episode_days", "episode_at"),
        # Expiry looks for the oldest pending ones.
        Index("ix_triggers_status_created", "status", "created_at"),
    )
    decisions = Table(
        "decisions",
        metadata,
        Column("decision_id", String(128), primary_key=True),
        Column("campaign_id", String(64), nullable=False),
        Column("trigger_event_id", String(128), nullable=False),
        Column("profile_id", String(64), nullable=False),
        Column("channel", String(16), nullable=True),
        Column("variant", String(128), nullable=False),
        Column("offer", String(128), nullable=True),
        Column("purpose", String(32), nullable=False),
        Column("tier", String(1), nullable=False),
        Column("segment", String(32), nullable=True),
        Column("outcome", String(16), nullable=False),
        Column("reasons", JSON, nullable=False),
        Column("expected_value", Float, nullable=True),
        Column("cost_micros", BigInteger, nullable=False, default=0),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("responded_at", UtcDateTime(), nullable=True),
        Column("converted_at", UtcDateTime(), nullable=True),
        Column("revenue_micros", BigInteger, nullable=False, default=0),
        # One trigger never yields two decisions (hence two messages) for one campaign; the
        # trigger first, as each batch looks its triggers' decisions up by trigger alone.
        UniqueConstraint("trigger_event_id", "campaign_id", name="uq_decisions_trigger_campaign"),
        Index("ix_decisions_profile_created", "profile_id", "created_at"),
        Index("ix_decisions_campaign_outcome", "campaign_id", "outcome"),
    )
    evidence = Table(
        "channel_evidence",
        metadata,
        Column("campaign_id", String(64), nullable=False),
        Column("channel", String(16), nullable=False),
        Column("tier", String(1), nullable=False),
        Column("segment", String(32), nullable=False),
        Column("sends", BigInteger, nullable=False),
        Column("responses", BigInteger, nullable=False),
        PrimaryKeyConstraint("campaign_id", "channel", "tier", "segment"),
    )
    spend = Table(
        "campaign_spend",
        metadata,
        Column("campaign_id", String(64), primary_key=True),
        Column("spent_micros", BigInteger, nullable=False),
    )
    erased = Table(
        "erased_profiles",
        metadata,
        # HMAC-SHA256 of the profile id under the service's erasure key, never the id.
        Column("marker", String(64), primary_key=True),
        Column("erased_at", UtcDateTime(), nullable=False),
    )
    campaigns = Table(
        "campaigns",
        metadata,
        Column("campaign_id", String(64), primary_key=True),
        Column("origin", String(8), nullable=False),
        Column("position", Integer, nullable=False),
        Column("definition", JSON, nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
    )
    return CampaignTables(
        metadata=metadata,
        contacts=contacts,
        triggers=triggers,
        decisions=decisions,
        evidence=evidence,
        spend=spend,
        campaigns=campaigns,
        erased=erased,
        inbox=inbox_table(metadata),
        outbox=outbox_table(metadata),
    )
