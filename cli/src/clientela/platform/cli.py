"""The `clientela` command line: run, feed, inspect and operate the platform."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from clientela.platform import dlq, simulate
from clientela.platform.client import EXIT_OK, EXIT_USAGE, Api, CliError
from clientela.platform.population import Population, PopulationSpec
from clientela.shared.settings import KafkaSettings

Handler = Callable[[argparse.Namespace], Any]


def emit(value: Any, as_json: bool) -> None:
    """Print a result: JSON for scripts, or a readable rendering for people."""
    if as_json:
        print(json.dumps(value, indent=2, default=str))
        return
    if isinstance(value, list):
        if not value:
            print("(none)")
        for item in value:
            print(
                "  ".join(f"{k}={v}" for k, v in item.items()) if isinstance(item, dict) else item
            )
        return
    if isinstance(value, dict):
        width = max((len(k) for k in value), default=0)
        for key, item in value.items():
            rendered = json.dumps(item, default=str) if isinstance(item, dict | list) else item
            print(f"{key.ljust(width)}  {rendered}")
        return
    print(value)


def _up(args: argparse.Namespace) -> int:
    from clientela.platform.up import up

    return up(args)


def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from clientela.platform.bench import BenchConfig, bench, chart

    config = BenchConfig(
        events=args.events,
        rate=args.rate,
        people=args.people,
        backend=args.backend,
        progress=not args.json,
    )
    result, seen = asyncio.run(bench(config))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    chart(result, seen, Path(args.output).with_suffix(".png"))
    return result


def _simulate(args: argparse.Namespace) -> dict[str, int]:
    population = Population(PopulationSpec(people=args.people, seed=args.seed))
    return asyncio.run(
        simulate.post_stream(
            population.touchpoints(args.events),
            args.events,
            rate=args.rate,
            progress=not args.json,
        )
    )


def _replay(args: argparse.Namespace) -> dict[str, int]:
    if args.file:
        events = simulate.read_jsonl(Path(args.file))
    elif args.topic:
        events = asyncio.run(
            simulate.read_topic_range(
                KafkaSettings(), args.topic, args.partition, args.start, args.end
            )
        )
    else:
        raise CliError("give a file or --topic", EXIT_USAGE)
    return asyncio.run(simulate.post_stream(events, len(events), progress=not args.json))


def _letters(args: argparse.Namespace) -> list[dlq.StoredLetter]:
    services = [args.service] if args.service else list(dlq.DLQ_TOPICS)

    async def collect() -> list[dlq.StoredLetter]:
        return [
            letter
            async for letter in dlq.read_letters(KafkaSettings(), services)
            if args.reason is None or letter.letter.data.reason_code == args.reason
        ]

    return asyncio.run(collect())


def _dlq_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [letter.row() for letter in _letters(args)][: args.limit]


def _dlq_inspect(args: argparse.Namespace) -> dict[str, Any]:
    for letter in _letters(args):
        if (letter.partition, letter.offset) == (args.partition, args.offset):
            return dlq.describe_letter(letter)
    raise CliError(f"no dead letter at partition {args.partition} offset {args.offset}", 3)


def _dlq_replay(args: argparse.Namespace) -> dict[str, Any]:
    letters = _letters(args)
    replayable = [letter for letter in letters if dlq.replayable(letter)]
    # A letter that kept only the start of a large record cannot bring the record back.
    skipped = len(letters) - len(replayable)
    if args.dry_run:
        return {"would_replay": len(replayable), "not_replayable": skipped}
    return {
        "replayed": asyncio.run(dlq.replay(KafkaSettings(), replayable)),
        "not_replayable": skipped,
    }


def _profile_get(args: argparse.Namespace) -> Any:
    return Api("profile").request("GET", f"/v1/profiles/{quote(args.profile_id)}")


def _profile_lookup(args: argparse.Namespace) -> Any:
    path = f"/v1/profiles/by/{quote(args.identifier_type)}/{quote(args.value, safe='')}"
    return Api("profile").request("GET", path)


def _profile_timeline(args: argparse.Namespace) -> Any:
    return Api("profile").request(
        "GET", f"/v1/profiles/{quote(args.profile_id)}/timeline", params={"limit": args.limit}
    )


def _profile_split(args: argparse.Namespace) -> Any:
    body: dict[str, Any] = {"identifiers": [{"type": args.identifier_type, "value": args.value}]}
    if args.reason:
        body["reason"] = args.reason
    return Api("profile", "admin").request(
        "POST", f"/v1/profiles/{quote(args.profile_id)}/split", json=body
    )


def _profile_erase(args: argparse.Namespace) -> Any:
    if not args.yes:
        raise CliError("erasure cannot be undone: add --yes to confirm", EXIT_USAGE)
    return Api("profile", "admin").request("DELETE", f"/v1/profiles/{quote(args.profile_id)}")


def _campaign_list(args: argparse.Namespace) -> Any:
    return Api("campaign").request("GET", "/v1/campaigns")


def _campaign_create(args: argparse.Namespace) -> Any:
    path = Path(args.file)
    definition = (
        tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
    )
    return Api("campaign", "admin").request("POST", "/v1/campaigns", json=definition)


def _campaign_report(args: argparse.Namespace) -> Any:
    api = Api("campaign")
    campaign = quote(args.campaign_id)
    return {
        "stats": api.request("GET", f"/v1/campaigns/{campaign}/stats"),
        "roi": api.request("GET", f"/v1/campaigns/{campaign}/roi"),
    }


def parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    root = argparse.ArgumentParser(prog="clientela", description=__doc__)
    root.add_argument("--json", action="store_true", help="machine-readable output")
    commands = root.add_subparsers(dest="command", required=True)

    def command(parent: Any, name: str, handler: Handler, help_text: str) -> Any:
        sub = parent.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    up = command(commands, "up", _up, "run the embedded platform with demo traffic")
    up.add_argument("--state-dir", default=".clientela/run")
    up.add_argument(
        "--exit-after-demo",
        action="store_true",
        help="stop once the demo produced tier changes and messages",
    )
    up.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the demo")

    sim = command(commands, "simulate", _simulate, "stream the synthetic population to ingest")
    sim.add_argument("--events", type=int, default=10_000)
    sim.add_argument("--people", type=int, default=2_000)
    sim.add_argument("--rate", type=float, default=0.0, help="touchpoints/s; 0 = max")
    sim.add_argument("--seed", type=int, default=42)

    rep = command(commands, "replay", _replay, "send a file or a topic range back into ingest")
    rep.add_argument("file", nargs="?", help="JSON lines of native touchpoints")
    rep.add_argument("--topic", help="a touchpoints topic to read from")
    rep.add_argument("--partition", type=int, default=0)
    rep.add_argument("--start", type=int, default=0, help="first offset")
    rep.add_argument("--end", type=int, default=None, help="offset to stop before")

    profile = commands.add_parser("profile", help="look at and manage customer profiles")
    pcmd = profile.add_subparsers(dest="action", required=True)
    command(pcmd, "get", _profile_get, "a profile by id").add_argument("profile_id")
    lookup = command(pcmd, "lookup", _profile_lookup, "a profile by any identifier")
    lookup.add_argument("identifier_type")
    lookup.add_argument("value")
    timeline = command(pcmd, "timeline", _profile_timeline, "a profile's touchpoints")
    timeline.add_argument("profile_id")
    timeline.add_argument("--limit", type=int, default=50)
    split = command(pcmd, "split", _profile_split, "split an identifier off (admin)")
    split.add_argument("profile_id")
    split.add_argument("identifier_type")
    split.add_argument("value")
    split.add_argument("--reason", help="why (kept with the split)")
    erase = command(pcmd, "erase", _profile_erase, "erase a person's data (admin)")
    erase.add_argument("profile_id")
    erase.add_argument("--yes", action="store_true")

    campaign = commands.add_parser("campaign", help="campaigns and their results")
    ccmd = campaign.add_subparsers(dest="action", required=True)
    command(ccmd, "list", _campaign_list, "campaign definitions")
    command(
        ccmd, "create", _campaign_create, "create from a TOML or JSON file (admin)"
    ).add_argument("file")
    command(
        ccmd, "report", _campaign_report, "a campaign's results: outcomes, uplift, ROI"
    ).add_argument("campaign_id")

    letters = commands.add_parser("dlq", help="dead-letter topics")
    dcmd = letters.add_subparsers(dest="action", required=True)
    for name, handler, text in (
        ("list", _dlq_list, "dead letters, oldest first"),
        ("inspect", _dlq_inspect, "one dead letter in full"),
        ("replay", _dlq_replay, "republish originals to their topics"),
    ):
        sub = command(dcmd, name, handler, text)
        sub.add_argument("--service", choices=sorted(dlq.DLQ_TOPICS))
        sub.add_argument("--reason", help="only this reason code")
        if name == "list":
            sub.add_argument("--limit", type=int, default=100)
        if name == "inspect":
            sub.add_argument("partition", type=int)
            sub.add_argument("offset", type=int)
        if name == "replay":
            sub.add_argument("--dry-run", action="store_true")

    bench = command(commands, "bench", _bench, "benchmark the whole platform end to end")
    bench.add_argument("--events", type=int, default=50_000)
    bench.add_argument("--people", type=int, default=20_000)
    bench.add_argument("--rate", type=float, default=0.0)
    bench.add_argument("--backend", choices=["production", "embedded"], default="production")
    bench.add_argument("--output", default=".bench/bench.json")
    return root


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = parser().parse_args(argv)
    try:
        result = args.handler(args)
    except CliError as exc:
        print(f"clientela: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    if isinstance(result, int):
        return result
    emit(result, args.json)
    return EXIT_OK


def main() -> None:
    """Entry point of the `clientela` command."""
    sys.exit(run())
