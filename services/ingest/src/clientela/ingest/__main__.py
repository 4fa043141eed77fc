"""Command line: `clientela-ingest serve` (the default) runs the ingest HTTP API and consumer."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence

import uvicorn

from clientela.ingest.adapters.metrics import MULTIPROC_ENV
from clientela.ingest.config import IngestSettings
from clientela.ingest.wiring import create_app
from clientela.shared.http import configure_logging, serve


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
    if settings.workers == 1:
        serve(create_app(settings), settings.http_host, settings.http_port, settings.log_level)
        return
    # Worker processes count into shared files so that /metrics reports them all.
    os.environ.setdefault(MULTIPROC_ENV, tempfile.mkdtemp(prefix="clientela-ingest-metrics-"))
    configure_logging(settings.log_level)
    uvicorn.run(
        "clientela.ingest.wiring:create_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
