"""Migrations of the profile schema (`clientela-profile migrate`; revisions in versions/)."""

from pathlib import Path

from clientela.profile.adapters.outbound import tables
from clientela.shared.migrations import Migrations

MIGRATIONS = Migrations(
    service="profile",
    versions=Path(__file__).parent / "versions",
    metadata=lambda: tables.metadata,
)
