"""Command line: `clientela-profile serve` runs the API, the consumer and the outbox relay."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from clientela.profile.config import ProfileSettings
from clientela.profile.wiring import create_app
from clientela.shared.http import serve


def main(argv: Sequence[str] | None = None) -> None:
    """Run the profile service, configured by environment variables."""
    parser = argparse.ArgumentParser(prog="clientela-profile", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve"],
        help="serve: HTTP API, touchpoint consumer and outbox relay in one process (default)",
    )
    parser.parse_args(argv)
    settings = ProfileSettings()
    serve(create_app(settings), settings.http_host, settings.http_port, settings.log_level)


if __name__ == "__main__":
    main()
