"""Benchmark: campaign decisions per second under a realistic load, against a bare baseline.

A synthetic population is loaded (profile and score events, as the consumer would receive
them), then tier changes arrive in consumer-sized batches. Each batch runs the real use case
in one transaction on the configured store: inbox claim, trigger storage, matching, expected
value per channel with Thompson sampling, holdouts, quiet hours, the contact ledger, decision
and outbox writes. The baseline is the bare transactional consumer on the same store (inbox
claim plus outbox staging of one record per event, no decision).

    python -m clientela.campaign.bench --output .bench/bench-campaign.json
    python -m clientela.campaign.bench --profiles 100000 \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test --cache-url redis://...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clientela.campaign.adapters.outbound.campaign_file import load_catalog
from clientela.campaign.application.decide_campaigns import CampaignInputs
from clientela.campaign.application.ports import Received
from clientela.campaign.config import CampaignSettings
from clientela.campaign.wiring import Container, build
from clientela.shared.codec import OutgoingEvent
from clientela.shared.contracts import (
    Channel,
    ConsentState,
    ConsentStatus,
    Lifecycle,
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    ScoresUpdated,
    ScoresUpdatedEvent,
    Segment,
    Tier,
    TierChanged,
    TierChangedEvent,
    TierMove,
)
from clientela.shared.contracts.topics import CAMPAIGN_MESSAGES
from clientela.shared.settings import CacheSettings, DatabaseSettings, KafkaSettings

NOW = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
REACH = [Channel.EMAIL, Channel.SMS, Channel.PHONE, Channel.BRANCH]
ZONES = ["Europe/Madrid", "Europe/London", "America/New_York", "UTC"]


def _profile(pid: str, rng: random.Random, prospect: bool) -> ProfileChangedEvent:
    reach = rng.sample(REACH, rng.randint(1, 4))
    consent = {
        ch: ConsentState(
            status=ConsentStatus.OPTED_IN if rng.random() < 0.8 else ConsentStatus.OPTED_OUT,
            updated_at=datetime(2024, 1, 1, tzinfo=UTC),
            source="bench",
        )
        for ch in reach
        if prospect or rng.random() < 0.3
    }
    return ProfileChangedEvent(
        source="bench",
        data=ProfileChanged(
            profile_id=pid,
            version=1,
            lifecycle=Lifecycle.PROSPECT if prospect else Lifecycle.CUSTOMER,
            created_at=NOW,
            reachable_channels=reach,
            consent=consent,
            traits={"timezone": rng.choice(ZONES)},
            aggregates=ProfileAggregates(
                currency="EUR",
                purchase_count=0 if prospect else rng.randint(1, 20),
                counts_by_channel={ch.value: rng.randint(0, 5) for ch in reach},
            ),
        ),
    )


def _scores(
    pid: str, tier: Tier, value: float, prospect: bool, rng: random.Random
) -> ScoresUpdatedEvent:
    return ScoresUpdatedEvent(
        source="bench",
        data=ScoresUpdated(
            profile_id=pid,
            profile_version=1,
            model_version="bench",
            lifecycle=Lifecycle.PROSPECT if prospect else Lifecycle.CUSTOMER,
            tier=tier,
            predicted_value=value,
            segment=None if prospect else rng.choice(list(Segment)),
            potential=rng.random() if prospect else None,
        ),
    )


def _tier_change(
    pid: str, tier: Tier, value: float, prospect: bool, rng: random.Random
) -> TierChangedEvent:
    if prospect:
        move, from_tier = TierMove.ENTERED, None
    else:
        move = rng.choice([TierMove.UP, TierMove.DOWN, TierMove.ENTERED])
        from_tier = {
            TierMove.UP: {Tier.A: Tier.B, Tier.B: Tier.C, Tier.C: None}[tier],
            TierMove.DOWN: {Tier.A: None, Tier.B: Tier.A, Tier.C: Tier.A}[tier],
            TierMove.ENTERED: None,
        }[move]
        if from_tier is None:
            move = TierMove.ENTERED
    return TierChangedEvent(
        source="bench",
        data=TierChanged(
            profile_id=pid,
            profile_version=1,
            from_tier=from_tier,
            to_tier=tier,
            move=move,
            lifecycle=Lifecycle.PROSPECT if prospect else Lifecycle.CUSTOMER,
            predicted_value=value,
            model_version="bench",
        ),
    )


def population(size: int, seed: int = 1) -> tuple[list[Any], list[TierChangedEvent]]:
    """Return the facts (profiles and scores) and the tier changes of a synthetic population."""
    rng = random.Random(seed)
    facts: list[Any] = []
    moves: list[TierChangedEvent] = []
    for n in range(size):
        pid = f"bench-{n}"
        prospect = rng.random() < 0.15
        tier = Tier.P if prospect else rng.choices([Tier.A, Tier.B, Tier.C], [0.2, 0.3, 0.5])[0]
        value = {Tier.A: 4000.0, Tier.B: 900.0, Tier.C: 150.0, Tier.P: 0.0}[tier]
        value *= rng.uniform(0.5, 1.5)
        facts += [_profile(pid, rng, prospect), _scores(pid, tier, value, prospect, rng)]
        moves.append(_tier_change(pid, tier, value, prospect, rng))
    return facts, moves


def _inputs(batch: Sequence[Any]) -> CampaignInputs:
    return CampaignInputs(
        profile_changes=[Received(e, 1) for e in batch if isinstance(e, ProfileChangedEvent)],
        scores=[Received(e, 1) for e in batch if isinstance(e, ScoresUpdatedEvent)],
        tier_changes=[Received(e, 1) for e in batch if isinstance(e, TierChangedEvent)],
    )


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _baseline(container: Container, moves: Sequence[TierChangedEvent], batch: int) -> float:
    """Return events/s of the bare transactional consumer: inbox claim + one outbox record."""
    started = time.perf_counter()
    for chunk in _chunks(moves, batch):
        async with container.unit_of_work() as uow:
            await uow.claim_new([f"base-{e.event_id}" for e in chunk])
            await uow.stage(
                [OutgoingEvent(CAMPAIGN_MESSAGES, e.data.profile_id, e, 1) for e in chunk]
            )
            await uow.commit()
    return len(moves) / (time.perf_counter() - started)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        database = DatabaseSettings(
            url=args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'campaign.db'}",
            schema_name=f"bench_campaign_{uuid.uuid4().hex[:8]}" if args.database_url else None,
        )
        settings = CampaignSettings(
            database=database,
            kafka=KafkaSettings(topic_prefix="bench."),
            cache=CacheSettings(
                url=args.cache_url or "memory://", key_prefix=f"bench{uuid.uuid4().hex[:6]}:"
            ),
        )
        facts, moves = population(args.profiles, args.seed)
        async with build(
            settings, catalog=load_catalog(), clock=lambda: NOW, consume=False
        ) as container:
            load_started = time.perf_counter()
            for chunk in _chunks(facts, args.batch):
                await container.decider.handle_batch(_inputs(chunk), container.unit_of_work())
            load_s = time.perf_counter() - load_started

            latencies: list[float] = []
            decisions = messages = 0
            started = time.perf_counter()
            for chunk in _chunks(moves, args.batch):
                t0 = time.perf_counter()
                outcome = await container.decider.handle_batch(
                    _inputs(chunk), container.unit_of_work()
                )
                latencies.append((time.perf_counter() - t0) * 1000)
                decisions += outcome.decisions
                messages += outcome.messages
            elapsed = time.perf_counter() - started
            baseline = await _baseline(container, moves, args.batch)
            if args.database_url:
                from clientela.shared.testing import drop_schema

                await container.engine.dispose()
                await drop_schema(args.database_url, database.resolved_schema("campaign"))
    events_per_s = len(moves) / elapsed
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "backend_database": "postgresql" if args.database_url else "sqlite",
        "backend_cache": "redis" if args.cache_url else "memory",
        "profiles": args.profiles,
        "batch_size": args.batch,
        "events_per_s": round(events_per_s, 1),
        "decisions_per_s": round(decisions / elapsed, 1),
        "messages_per_s": round(messages / elapsed, 1),
        "decisions": decisions,
        "messages": messages,
        "p50_ms": round(quantiles[49], 2),
        "p99_ms": round(quantiles[98], 2),
        "load_events_per_s": round(len(facts) / load_s, 1),
        "baseline_events_per_s": round(baseline, 1),
        "ratio": round(events_per_s / baseline, 3),
        "elapsed_s": round(elapsed, 2),
    }


def _print(figures: dict[str, Any]) -> None:
    width = max(len(k) for k in figures)
    print("campaign decision benchmark")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(prog="clientela.campaign.bench", description=__doc__)
    parser.add_argument("--output", type=Path, help="write the figures as one JSON object here")
    parser.add_argument("--profiles", type=int, default=20_000, help="people (tier changes)")
    parser.add_argument("--batch", type=int, default=500, help="events per consumed batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="SQLAlchemy async URL; default a SQLite file")
    parser.add_argument("--cache-url", help="redis://... for the Redis ledger; default memory")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    _print(figures)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
