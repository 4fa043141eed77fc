"""Developer commands for a service's migrations.

python -m clientela.shared.migrations revision campaign -m "add offers" [--url URL]
python -m clientela.shared.migrations status campaign     # database from CLIENTELA_DATABASE_*
python -m clientela.shared.migrations check campaign      # exit 1 if tables != schema
python -m clientela.shared.migrations upgrade campaign
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence

from clientela.shared.http import configure_logging
from clientela.shared.migrations import Migrations, differences, revision, status, upgrade
from clientela.shared.settings import DatabaseSettings


def load(service: str) -> Migrations:
    """Return the migrations a service declares in `clientela.<service>.migrations`."""
    found = importlib.import_module(f"clientela.{service}.migrations").MIGRATIONS
    assert isinstance(found, Migrations)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run one developer command."""
    parser = argparse.ArgumentParser(
        prog="python -m clientela.shared.migrations", description=__doc__
    )
    parser.add_argument("command", choices=["revision", "status", "check", "upgrade"])
    parser.add_argument("service")
    parser.add_argument("-m", "--message", default="change")
    parser.add_argument("--url", help="revision: a PostgreSQL URL for the scratch schema")
    parser.add_argument("--empty", action="store_true", help="revision: no autogenerate")
    args = parser.parse_args(argv)
    configure_logging("INFO")
    migrations = load(args.service)
    if args.command == "revision":
        path = asyncio.run(
            revision(migrations, args.message, url=args.url, autogenerate=not args.empty)
        )
        print(f"wrote {path}: review it before committing")
        return 0
    settings = DatabaseSettings()
    if args.command == "upgrade":
        print(", ".join(asyncio.run(upgrade(settings, migrations))))
        return 0
    if args.command == "status":
        found = asyncio.run(status(settings, migrations))
        print(f"current: {', '.join(found.current) or 'none'}; head: {', '.join(found.heads)}")
        return 0
    diff = asyncio.run(differences(settings, migrations))
    for item in diff:
        print(item)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
