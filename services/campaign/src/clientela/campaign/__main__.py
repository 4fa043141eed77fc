"""Command line: `clientela-campaign serve` (API, consumer, relay) and `migrate` (the schema)."""

from __future__ import annotations

import argparse

from clientela.campaign.config import CampaignSettings
from clientela.campaign.migrations import MIGRATIONS
from clientela.campaign.wiring import create_app
from clientela.shared.http import serve
from clientela.shared.migrations import migrate


def main(argv: list[str] | None = None) -> None:
    """Run the campaign service (the `serve` command is the default)."""
    parser = argparse.ArgumentParser(prog="clientela-campaign", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve: HTTP API, consumer and outbox relay in one process (default); "
        "migrate: upgrade the database schema to this release, then exit",
    )
    args = parser.parse_args(argv)
    settings = CampaignSettings()
    if args.command == "migrate":
        migrate(settings.database, MIGRATIONS, settings.log_level)
        return
    serve(create_app(settings), settings.http_host, settings.http_port, settings.log_level)


if __name__ == "__main__":
    main()
