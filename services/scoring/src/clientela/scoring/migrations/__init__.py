"""Migrations of the scoring schema (`clientela-scoring migrate`; revisions in versions/)."""

from pathlib import Path

from clientela.scoring.adapters.outbound import tables
from clientela.shared.migrations import Migrations

MIGRATIONS = Migrations(
    service=tables.SERVICE,
    versions=Path(__file__).parent / "versions",
    metadata=lambda: tables.metadata,
)
