"""`clientela up`: the embedded platform (broker, SQLite, in-process cache, four services, demo)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from clientela.platform.demo import demo_touchpoints, describe, post_touchpoints, tail_public_topics
from clientela.platform.launcher import Platform, PlatformSettings
from clientela.shared.embedded_broker import EmbeddedBroker
from clientela.shared.settings import DEV_READ_KEY, DEV_WRITE_KEY


def _keys() -> tuple[str, str]:
    return (
        os.environ.get("CLIENTELA_DEV_WRITE_KEY", DEV_WRITE_KEY),
        os.environ.get("CLIENTELA_DEV_READ_KEY", DEV_READ_KEY),
    )


async def _show(settings: PlatformSettings, *, exit_after_demo: bool, wait_s: float) -> int:
    write_key, read_key = _keys()
    seen: dict[str, int] = {"tier-changes.v1": 0, "campaign-messages.v1": 0}

    both_seen = asyncio.Event()

    def on_event(topic: str, event: dict[str, Any]) -> None:
        seen[topic] = seen.get(topic, 0) + 1
        print("  " + describe(topic, event), flush=True)
        if all(seen.values()):
            both_seen.set()

    stop = asyncio.Event()
    tail = asyncio.create_task(
        tail_public_topics(settings.bootstrap_servers, settings.topic_prefix, on_event, stop)
    )
    events = demo_touchpoints()
    answer = await post_touchpoints(settings.url("ingest"), write_key, events)
    print(
        f"\nposted {len(events)} demo touchpoints to ingest: {answer['accepted']} accepted, "
        f"{answer['duplicates']} duplicates, {answer['rejected']} rejected\n",
        flush=True,
    )
    if exit_after_demo:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both_seen.wait(), timeout=wait_s)
        await asyncio.sleep(2)  # let the rest of the burst print
        stop.set()
        await tail
        ok = seen["tier-changes.v1"] > 0 and seen["campaign-messages.v1"] > 0
        print(
            f"\n{'OK' if ok else 'FAILED'}: {seen['tier-changes.v1']} tier changes, "
            f"{seen['campaign-messages.v1']} campaign messages",
            flush=True,
        )
        return 0 if ok else 1
    _print_where_to_look(settings, write_key, read_key)
    try:
        await tail
    finally:
        stop.set()
    return 0


def _print_where_to_look(settings: PlatformSettings, write_key: str, read_key: str) -> None:
    print(
        f"""
Clientela is running (Ctrl-C stops it).
  ingest    {settings.url("ingest")}/docs    write key: {write_key}
  profile   {settings.url("profile")}/docs   read key:  {read_key}
  scoring   {settings.url("scoring")}/docs
  campaign  {settings.url("campaign")}/docs
  console   {settings.url("console")}    sign in with {read_key} (or the admin key)
  broker    {settings.bootstrap_servers} (embedded; topics listed in docs/contracts/topics.json)
Try:
  curl -s -H 'Authorization: Bearer {read_key}' \\
       {settings.url("profile")}/v1/profiles/by/customer_id/C0001
  curl -s -H 'Authorization: Bearer {read_key}' {settings.url("scoring")}/v1/tiers/summary
Live public events follow:
""",
        flush=True,
    )


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def up(args: argparse.Namespace) -> int:
    """Run the embedded platform: broker, SQLite, in-process cache, four services, demo."""
    state = Path(args.state_dir)
    # The embedded broker keeps nothing across runs, so neither do the stores it feeds.
    shutil.rmtree(state, ignore_errors=True)
    write_key, read_key = _keys()
    print(
        f"development keys: write={write_key} read={read_key} "
        "(set CLIENTELA_DEV_WRITE_KEY / CLIENTELA_DEV_READ_KEY to change)",
        flush=True,
    )
    with EmbeddedBroker(log_path=state / "logs" / "broker.log") as broker:
        print(f"embedded broker on {broker.bootstrap_servers}", flush=True)
        settings = PlatformSettings(
            bootstrap_servers=broker.bootstrap_servers, data_dir=state / "data", console=True
        )
        with Platform(settings, log_dir=state / "logs") as platform:
            print(f"four services and the console ready; logs in {state / 'logs'}", flush=True)
            signal.signal(signal.SIGTERM, _interrupt)
            try:
                return asyncio.run(
                    _show(platform.settings, exit_after_demo=args.exit_after_demo, wait_s=args.wait)
                )
            except KeyboardInterrupt:
                print("\nstopping...", flush=True)
                return 0
