"""SQL tables of the campaign service (schema-less; mapped into the service schema on PG)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from clientela.shared.db import UtcDateTime
from clientela.shared.outbox import inbox_table, outbox_table


@dataclass(frozen=True, slots=True)
class CampaignTables:
    """Every table the service owns, on one MetaData."""

    metadata: MetaData
    contacts: Table
    triggers: Table
    decisions: Table
    inbox: Table
    outbox: Table


def campaign_tables() -> CampaignTables:
    """Declare the service's tables on a fresh MetaData."""
    metadata = MetaData()
    contacts = Table(
        "contacts",
        metadata,
        Column("profile_id", String(64), primary_key=True),
        Column("version", Integer, nullable=False),
        Column("lifecycle", String(16), nullable=False),
        Column("reachable_channels", JSON, nullable=False),
        Column("consent", JSON, nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
    )
    triggers = Table(
        "triggers",
        metadata,
        Column("trigger_event_id", String(128), primary_key=True),
        Column("profile_id", String(64), nullable=False),
        Column("payload", JSON, nullable=False),
        Column("required_profile_version", Integer, nullable=False),
        Column("accepted_at_ms", BigInteger, nullable=True),
        Column("status", String(16), nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("decided_at", UtcDateTime(), nullable=True),
        # Looked up by profile when its contact arrives, among the pending ones only.
        Index("ix_triggers_profile_status", "profile_id", "status"),
    )
    decisions = Table(
        "decisions",
        metadata,
        Column("decision_id", String(128), primary_key=True),
        Column("campaign_id", String(64), nullable=False),
        Column("trigger_event_id", String(128), nullable=False),
        Column("profile_id", String(64), nullable=False, index=True),
        Column("channel", String(16), nullable=True),
        Column("variant", String(128), nullable=False),
        Column("purpose", String(32), nullable=False),
        Column("tier", String(1), nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("reasons", JSON, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        # One trigger never yields two decisions (hence two messages) for one campaign.
        UniqueConstraint("campaign_id", "trigger_event_id", name="uq_decisions_campaign_trigger"),
    )
    return CampaignTables(
        metadata=metadata,
        contacts=contacts,
        triggers=triggers,
        decisions=decisions,
        inbox=inbox_table(metadata),
        outbox=outbox_table(metadata),
    )
