"""Migrations of the campaign schema (`clientela-campaign migrate`; revisions in versions/)."""

from pathlib import Path

from clientela.campaign.adapters.outbound.tables import campaign_tables
from clientela.shared.migrations import Migrations

MIGRATIONS = Migrations(
    service="campaign",
    versions=Path(__file__).parent / "versions",
    metadata=lambda: campaign_tables().metadata,
)
