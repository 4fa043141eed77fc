"""Command line: `clientela-console serve` runs the web console and its read-model consumer."""

from __future__ import annotations

import argparse

from clientela.console.config import ConsoleSettings
from clientela.console.wiring import create_app
from clientela.shared.http import serve


def main(argv: list[str] | None = None) -> None:
    """Run the console (the `serve` command is the default)."""
    parser = argparse.ArgumentParser(prog="clientela-console", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args(argv)
    settings = ConsoleSettings()
    serve(create_app(settings), settings.http_host, settings.http_port, settings.log_level)


if __name__ == "__main__":
    main()
