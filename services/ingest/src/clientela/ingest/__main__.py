"""Command line: `clientela-ingest serve` (the default) runs the ingest HTTP API."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from clientela.ingest.config import IngestSettings
from clientela.ingest.wiring import create_app
from clientela.shared.http import serve


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(
        prog="clientela-ingest", description="Clientela ingest service (configured by env vars)."
    )
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve"], help="what to run"
    )
    parser.parse_args(argv)
    settings = IngestSettings()
    serve(create_app(settings), settings.http_host, settings.http_port, settings.log_level)


if __name__ == "__main__":
    main()
