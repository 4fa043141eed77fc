"""Command line: `clientela-campaign serve` runs the API, the consumer and the outbox relay."""

from __future__ import annotations

import argparse

from clientela.campaign.config import CampaignSettings
from clientela.campaign.wiring import create_app
from clientela.shared.http import serve


def main(argv: list[str] | None = None) -> None:
    """Run the campaign service (the `serve` command is the default)."""
    parser = argparse.ArgumentParser(prog="clientela-campaign", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args(argv)
    settings = CampaignSettings()
    serve(create_app(settings), settings.http_host, settings.http_port, settings.log_level)


if __name__ == "__main__":
    main()
