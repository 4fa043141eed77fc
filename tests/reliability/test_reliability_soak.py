"""Soak (make test-faults only): half the measured maximum rate for a bounded time.

First the platform's end-to-end maximum is measured (a burst posted as fast as ingest takes
it, until the profile service has caught up). Then touchpoints flow at half that rate for
CLIENTELA_SOAK_SECONDS (default 300) while the resident memory of each service process and
the consumer lag are sampled; neither may grow beyond noise.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx
import psutil
import pytest
from clientela_reliability_harness import Ingestion, Rig, customer_stream

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(3600)]

SAMPLE_EVERY_S = 5.0
MEMORY_NOISE = 0.15  # relative growth tolerated between the early and the late samples
MEMORY_NOISE_MB = 25.0
LAG_NOISE = 0.05  # lag may grow by at most this share of the rate


def _rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


async def _max_rate(rig: Rig, client: httpx.AsyncClient) -> float:
    """Post a burst as fast as ingest takes it; touchpoints/s until every consumer caught up."""
    events = list(customer_stream(rig, 4_000, 400, seed=5, tag="burst"))
    ingestion = Ingestion(rig, client)
    started = time.monotonic()
    queue = [events[i : i + 100] for i in range(0, len(events), 100)]

    async def poster() -> None:
        while queue:
            await ingestion.post(queue.pop())

    await asyncio.gather(*(poster() for _ in range(4)))
    while any((await rig.consumer_lag()).values()):
        await asyncio.sleep(0.5)
    return len(events) / (time.monotonic() - started)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (per second)."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


async def test_reliability_soak_at_half_the_maximum_rate(up: Rig) -> None:
    seconds = float(os.environ.get("CLIENTELA_SOAK_SECONDS", "300"))
    async with httpx.AsyncClient(timeout=30) as client:
        maximum = await _max_rate(up, client)
        rate = maximum / 2
        await up.wait_quiet(120)
        events = customer_stream(up, int(rate * seconds) + 1, 5_000, seed=9, tag="soak")
        ingestion = Ingestion(up, client)
        samples: list[tuple[float, dict[str, float], dict[str, int]]] = []
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                memory = {s: _rss_mb(pid) for s, pid in up.platform.pids().items()}
                samples.append((time.monotonic(), memory, await up.consumer_lag()))
                await asyncio.sleep(SAMPLE_EVERY_S)

        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        batch: list[dict[str, object]] = []
        sent = 0
        for event in events:
            batch.append(event)
            if len(batch) == 20:
                await ingestion.post(batch)
                sent += len(batch)
                batch = []
                ahead = sent / rate - (time.monotonic() - started)
                await asyncio.sleep(max(0.0, ahead))
        if batch:
            await ingestion.post(batch)
        stop.set()
        await sampler
        await up.wait_quiet(180)

    rows = [
        f"{t - started:7.0f}s "
        + " ".join(f"{s}={m:6.0f}MB" for s, m in sorted(mem.items()))
        + " lag "
        + " ".join(f"{s}={n}" for s, n in sorted(lag.items()))
        for t, mem, lag in samples
    ]
    print(f"\nmaximum {maximum:.0f} touchpoints/s; soak at {rate:.0f}/s for {seconds:.0f}s")
    print("\n".join(rows))
    third = max(1, len(samples) // 3)
    early, late = samples[1 : third + 1] or samples[:1], samples[-third:]
    for service in up.platform.pids():
        before = statistics.median(m[service] for _, m, _ in early if service in m)
        after = statistics.median(m[service] for _, m, _ in late if service in m)
        assert after <= before * (1 + MEMORY_NOISE) + MEMORY_NOISE_MB, (
            f"{service} grew from {before:.0f} MB to {after:.0f} MB"
        )
        # A consumer that keeps up has a lag that wanders around a level; one that does not
        # falls behind at a steady rate.
        growth = _slope([(t, lag.get(service, 0)) for t, _, lag in samples])
        assert growth < LAG_NOISE * rate, (
            f"{service} falls behind by {growth:.0f} touchpoints/s at {rate:.0f}/s"
        )
