"""Command line: `clientela-scoring serve` (API, consumer, relay) and `migrate` (the schema)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from clientela.scoring.config import ScoringSettings
from clientela.scoring.migrations import MIGRATIONS
from clientela.scoring.wiring import create_app
from clientela.shared.http import serve
from clientela.shared.migrations import migrate


def main(argv: Sequence[str] | None = None) -> None:
    """Run the scoring service, configured by environment variables."""
    parser = argparse.ArgumentParser(
        prog="clientela-scoring", description="Clientela scoring service."
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve: HTTP API + Kafka consumer + outbox relay in one process (default); "
        "migrate: upgrade the database schema to this release, then exit",
    )
    args = parser.parse_args(argv)
    settings = ScoringSettings()
    if args.command == "migrate":
        migrate(settings.database, MIGRATIONS, settings.log_level)
        return
    serve(create_app(settings), settings.http_host, settings.http_port, settings.log_level)


if __name__ == "__main__":
    main()
