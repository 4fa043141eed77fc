"""Command line: `clientela-profile serve` runs the service; `migrate`, `rebuild` maintain it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Sequence

from clientela.profile.application.admin import rebuild_profiles
from clientela.profile.config import ProfileSettings
from clientela.profile.migrations import MIGRATIONS
from clientela.profile.wiring import build, create_app
from clientela.shared.http import serve
from clientela.shared.migrations import migrate


async def rebuild(settings: ProfileSettings) -> dict[str, int]:
    """Recompute every profile from its stored touchpoints; announce those that changed."""
    async with build(settings, consume=False) as container:
        outcome = await rebuild_profiles(
            container.unit_of_work(),
            container.policy,
            source=settings.source,
            cache=container.cache,
        )
        # Let the relay publish what the rebuild staged before the process ends.
        while await container.relay.pending():
            await container.relay.relay_once()
    return {"profiles": outcome.profiles, "changed": outcome.changed}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the profile service, configured by environment variables."""
    parser = argparse.ArgumentParser(prog="clientela-profile", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate", "rebuild"],
        help="serve: HTTP API, touchpoint consumer and outbox relay in one process (default); "
        "migrate: upgrade the database schema to this release, then exit; "
        "rebuild: recompute every profile from its stored touchpoints, then exit",
    )
    args = parser.parse_args(argv)
    settings = ProfileSettings()
    if args.command == "migrate":
        migrate(settings.database, MIGRATIONS, settings.log_level)
        return
    if args.command == "rebuild":
        logging.basicConfig(level=settings.log_level)
        print(json.dumps(asyncio.run(rebuild(settings))))
        return
    serve(create_app(settings), settings.http_host, settings.http_port, settings.log_level)


if __name__ == "__main__":
    main()
