"""Crash: kill -9 every service at random moments while touchpoints flow; nothing lost or doubled.

The CI size runs in the default suite; the full size (tens of thousands of touchpoints, many
kills) runs with `make test-faults`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from clientela_reliability_harness import (
    READ,
    Ingestion,
    Rig,
    Truth,
    customer_stream,
    mismatches,
    profile_by_customer,
)

from clientela.platform.launcher import SERVICES
from clientela.shared.contracts import topics

pytestmark = pytest.mark.e2e


@dataclass
class CrashRun:
    """The size and rhythm of one crash run."""

    touchpoints: int
    people: int
    rate_per_s: float
    kills: int
    seed: int
    batch: int = 25
    posters: int = 3
    log: list[str] = field(default_factory=list)


async def _stream(rig: Rig, run: CrashRun, ingestion: Ingestion, truth: Truth) -> None:
    """Post the touchpoints in batches at about the given rate, from a few concurrent posters."""
    events = list(customer_stream(rig, run.touchpoints, run.people, run.seed, f"crash{run.seed}"))
    for event in events:
        truth.add(event)
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for start in range(0, len(events), run.batch):
        queue.put_nowait(events[start : start + run.batch])
    interval = run.batch * run.posters / run.rate_per_s

    async def poster() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            started = time.monotonic()
            await ingestion.post(batch)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    await asyncio.gather(*(poster() for _ in range(run.posters)))


async def _chaos(rig: Rig, run: CrashRun, streaming: asyncio.Task[None]) -> None:
    """Kill a service, leave it dead a moment, restart it; every service at least once."""
    rng = random.Random(run.seed)
    started = time.monotonic()
    order = list(SERVICES)
    rng.shuffle(order)
    duration = run.touchpoints / run.rate_per_s
    gap = duration / (run.kills + 1)
    for n in range(run.kills):
        if streaming.done() and n >= len(SERVICES):
            break  # the stream is over and every service has died at least once
        await asyncio.sleep(rng.uniform(0.2 * gap, 0.6 * gap))
        service = order[n % len(order)]
        rig.kill(service)
        down = rng.uniform(0.0, 1.5)
        flowing = "while touchpoints flow" if not streaming.done() else "after the stream"
        run.log.append(
            f"t+{time.monotonic() - started:.1f}s kill -9 {service} {flowing}, down {down:.1f}s"
        )
        await asyncio.sleep(down)
        await asyncio.to_thread(rig.restart, service)


async def _settled_mismatches(
    client: httpx.AsyncClient, rig: Rig, truth: Truth, timeout_s: float
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        wrong = await mismatches(client, rig, truth)
        if not wrong or time.monotonic() > deadline:
            return wrong
        await asyncio.sleep(2)


async def _check_tier_announcements(
    client: httpx.AsyncClient, rig: Rig, profile_ids: list[str]
) -> list[str]:
    """Return what is wrong with the tier-change stream of these profiles."""
    records = await rig.read_topic(topics.TIER_CHANGES)
    seen: dict[str, tuple[Any, ...]] = {}
    moves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    problems: list[str] = []
    # One key, one partition: a profile's changes are read in the order they were published.
    for record in records:
        event = json.loads(record.value)
        data = event["data"]
        what = (data["profile_id"], data["profile_version"], data["from_tier"], data["to_tier"])
        earlier = seen.get(event["event_id"])
        if earlier is not None:
            # A redelivered copy, which consumers drop by event id; it must be the same move.
            if earlier != what:
                problems.append(
                    f"{data['profile_id']}: event id {event['event_id']} announced {earlier[2:]}"
                    f" and then a different move {what[2:]}: consumers drop the second"
                )
            continue
        seen[event["event_id"]] = what
        moves[data["profile_id"]].append(data)
    semaphore = asyncio.Semaphore(8)

    async def check(profile_id: str) -> None:
        async with semaphore:
            response = await client.get(
                f"{rig.url('scoring')}/v1/scores/{profile_id}", headers=READ
            )
        chain = moves.get(profile_id, [])
        if response.status_code == 404:
            if chain:
                problems.append(f"{profile_id}: tier changes announced but no scores")
            return
        assert response.status_code == 200, response.text
        tier = response.json()["tier"]
        if not chain:
            problems.append(f"{profile_id}: in tier {tier} but no tier change announced")
            return
        previous = None
        for move in chain:
            if move["from_tier"] != previous:
                problems.append(
                    f"{profile_id}: announced {move['from_tier']}->{move['to_tier']} "
                    f"after {previous} (chain {[(m['from_tier'], m['to_tier']) for m in chain]})"
                )
            previous = move["to_tier"]
        if previous != tier:
            problems.append(f"{profile_id}: last announced tier {previous}, scores say {tier}")

    await asyncio.gather(*(check(p) for p in profile_ids))
    return problems


async def _campaign_duplicates(rig: Rig) -> dict[tuple[str, str], set[str]]:
    """Return the (campaign, trigger) pairs that produced more than one distinct message."""
    messages: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in await rig.read_topic(topics.CAMPAIGN_MESSAGES):
        event = json.loads(record.value)
        data = event["data"]
        messages[(data["campaign_id"], data["trigger_event_id"])].add(event["event_id"])
    return {k: ids for k, ids in messages.items() if len(ids) > 1}


async def run_crash_test(rig: Rig, run: CrashRun) -> None:
    """Stream, kill, restart; then compare the platform's state with the ground truth."""
    truth = Truth()
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        ingestion = Ingestion(rig, client)
        streaming = asyncio.create_task(_stream(rig, run, ingestion, truth))
        await asyncio.gather(_chaos(rig, run, streaming), streaming)
        await asyncio.to_thread(rig.ensure_up)
        statuses = Counter(ingestion.outcomes.values())
        assert set(statuses) <= {"accepted", "duplicate"}, statuses
        assert len(ingestion.outcomes) == run.touchpoints

        wrong = await _settled_mismatches(client, rig, truth, timeout_s=120)
        assert not wrong, (
            f"{len(wrong)} of {len(truth.touchpoints)} customers differ from the truth, e.g. "
            f"{dict(list(wrong.items())[:5])}; statuses {statuses}; kills {run.log}"
        )
        await rig.wait_quiet(timeout_s=120)
        profile_ids = []
        for customer in truth.touchpoints:
            profile = await profile_by_customer(client, rig, customer)
            assert profile is not None
            profile_ids.append(profile["profile_id"])
        problems = await _check_tier_announcements(client, rig, profile_ids)
        assert not problems, f"{len(problems)} tier-change problems, e.g. {problems[:10]}"
    doubled = await _campaign_duplicates(rig)
    assert not doubled, f"triggers with two campaign messages: {dict(list(doubled.items())[:5])}"
    print(
        f"crash run: {run.touchpoints} touchpoints, {len(truth.touchpoints)} customers, "
        f"{len(run.log)} kills, {ingestion.retries} retried posts, statuses {dict(statuses)}, "
        f"{time.monotonic() - started:.0f}s; {run.log}"
    )


async def test_reliability_crash_every_service_loses_and_doubles_nothing(up: Rig) -> None:
    """CI size: a few thousand touchpoints, each service killed at least once."""
    await run_crash_test(
        up, CrashRun(touchpoints=2_000, people=300, rate_per_s=60, kills=4, seed=11)
    )


@pytest.mark.faults
@pytest.mark.timeout(1800)
async def test_reliability_crash_full_size(up: Rig) -> None:
    """Full size: tens of thousands of touchpoints and many kills."""
    await run_crash_test(
        up, CrashRun(touchpoints=30_000, people=3_000, rate_per_s=150, kills=40, seed=23)
    )
