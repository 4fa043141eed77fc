"""Outages: the broker frozen (SIGSTOP) for ~20 s; PostgreSQL frozen, then dropping connections.

Touchpoints keep coming during each outage from a client that retries until acknowledged.
Each outage runs once (module fixtures) and is judged by several tests: ingest refuses what
it cannot persist, consumers stop committing and recover on their own, HTTP reads answer 503
in bounded time, and every acknowledged touchpoint is in the profiles afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from clientela_reliability_harness import (
    GROUPS,
    READ,
    Ingestion,
    Rig,
    Truth,
    customer_stream,
    mismatches,
)

from clientela.shared.contracts import topics

pytestmark = pytest.mark.e2e

BROKER_PAUSE_S = 20.0
DB_PAUSE_S = 9.0
DB_DROP_S = 7.0
READ_TIMEOUT_S = 10.0  # a read that takes longer than this during an outage counts as hung


@dataclass
class Observed:
    """What clients saw during one outage, and the state afterwards."""

    # (started, finished, status or exception name, accepted count) of every ingest POST
    posts: list[tuple[float, float, int | str, int]] = field(default_factory=list)
    # (fault, status or exception name, seconds) of every profile read during the outage
    reads: list[tuple[str, int | str, float]] = field(default_factory=list)
    # (service, status or exception name) of every readiness probe during the outage
    readyz: list[tuple[str, int | str]] = field(default_factory=list)
    fault: str = ""
    window: tuple[float, float] = (0.0, 0.0)
    committed: list[dict[TopicPartition, int]] = field(default_factory=list)
    end_offsets: list[dict[TopicPartition, int]] = field(default_factory=list)
    truth: Truth = field(default_factory=Truth)
    unacknowledged: int = 0
    wrong: dict[str, Any] = field(default_factory=dict)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport to note when each ingest POST started and ended, and its answer."""

    def __init__(self, observed: Observed) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._observed = observed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.HTTPError as exc:
            if request.method == "POST":
                self._observed.posts.append((started, time.monotonic(), type(exc).__name__, 0))
            raise
        if request.method == "POST":
            await response.aread()
            accepted = 0
            if response.status_code == 200:
                accepted = int(httpx.Response(200, content=response.content).json()["accepted"])
            self._observed.posts.append((started, time.monotonic(), response.status_code, accepted))
        return response


async def _committed(rig: Rig, service: str, spec: Any) -> dict[TopicPartition, int]:
    consumer = await rig._consumer(GROUPS[service])
    try:
        tps = rig._partitions(consumer, [rig.topic(spec)])
        return {tp: (await consumer.committed(tp) or 0) for tp in tps}
    finally:
        await consumer.stop()


async def _probe(rig: Rig, observed: Observed, known_customer: str, stop: asyncio.Event) -> None:
    """Read a known profile and every service's readiness until told to stop."""
    async with httpx.AsyncClient(timeout=READ_TIMEOUT_S) as client:
        while not stop.is_set():
            started = time.monotonic()
            fault = observed.fault
            url = f"{rig.url('profile')}/v1/profiles/by/customer_id/{known_customer}"
            try:
                status: int | str = (await client.get(url, headers=READ)).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            observed.reads.append((fault, status, time.monotonic() - started))
            for service in ("ingest", "profile", "scoring", "campaign"):
                try:
                    ready: int | str = (
                        await client.get(rig.url(service) + "/readyz", timeout=5)
                    ).status_code
                except httpx.HTTPError as exc:
                    ready = type(exc).__name__
                observed.readyz.append((service, ready))
            await asyncio.sleep(1.0)


async def run_outage(
    rig: Rig,
    tag: str,
    faults: list[tuple[str, Callable[[], None], float, Callable[[], None]]],
    during: Callable[[Observed], Awaitable[None]] | None = None,
) -> Observed:
    """Stream touchpoints, apply each (start, seconds, end) fault in turn, then settle."""
    await asyncio.to_thread(rig.ensure_up)
    observed = Observed()
    # About 40 touchpoints/s for longer than the outage lasts: some arrive during every fault.
    seconds = sum(f[2] for f in faults) + 25
    events = list(customer_stream(rig, int(seconds * 40), 150, seed=len(tag), tag=tag))
    for event in events:
        observed.truth.add(event)
    known = events[0]["identifiers"]["customer_id"]
    stop_posting, stop_probing = asyncio.Event(), asyncio.Event()
    async with httpx.AsyncClient(timeout=30, transport=RecordingTransport(observed)) as client:
        ingestion = Ingestion(rig, client)
        await ingestion.post(events[:10])
        sent = 10

        async def post_steadily() -> None:
            nonlocal sent
            while sent < len(events):
                batch = events[sent : sent + 10]
                await ingestion.post(batch, give_up_s=240)
                sent += len(batch)
                if stop_posting.is_set():
                    continue  # after the outage: send the rest without pause
                await asyncio.sleep(0.25)

        # The profile must exist before the outage so reads during it have something to find.
        async with asyncio.timeout(90):
            while (
                await client.get(
                    f"{rig.url('profile')}/v1/profiles/by/customer_id/{known}", headers=READ
                )
            ).status_code != 200:
                await asyncio.sleep(0.3)
        poster = asyncio.create_task(post_steadily())
        await asyncio.sleep(2)
        prober = asyncio.create_task(_probe(rig, observed, known, stop_probing))
        window_start = time.monotonic()
        for name, start, seconds, end in faults:
            observed.fault = name
            start()
            try:
                await asyncio.sleep(2)
                if during is not None:
                    await during(observed)
                await asyncio.sleep(max(0.0, seconds - 4))
                if during is not None:
                    await during(observed)
                await asyncio.sleep(2)
            finally:
                end()
        observed.window = (window_start, time.monotonic())
        stop_probing.set()
        await prober
        stop_posting.set()
        await poster
        observed.unacknowledged = sum(
            1 for s in ingestion.outcomes.values() if s not in ("accepted", "duplicate")
        )
        deadline = time.monotonic() + 120
        while (wrong := await mismatches(client, rig, observed.truth)) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(2)
        observed.wrong = wrong
    return observed


# --- broker frozen -----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def broker_outage(rig: Rig) -> Observed:
    """Freeze the broker for ~20 s while touchpoints keep coming."""
    pid = rig.broker_pid
    return await run_outage(
        rig,
        "brokerpause",
        [
            (
                "frozen",
                lambda: os.kill(pid, signal.SIGSTOP),
                BROKER_PAUSE_S,
                lambda: os.kill(pid, signal.SIGCONT),
            )
        ],
    )


def _answered_during(observed: Observed) -> list[tuple[float, float, int | str, int]]:
    """The requests answered while the fault lasted (a second's grace after it began)."""
    start, end = observed.window
    return [p for p in observed.posts if start + 1.0 < p[1] < end - 0.5]


async def test_reliability_broker_frozen_ingest_answers_503_and_never_acknowledges(
    broker_outage: Observed,
) -> None:
    start = broker_outage.window[0]
    timeline = [
        (round(p[0] - start, 1), round(p[1] - p[0], 1), p[2])
        for p in broker_outage.posts
        if p[1] > start and p[0] < broker_outage.window[1]
    ]
    during = _answered_during(broker_outage)
    lies = [p for p in during if p[2] == 200 and p[3] > 0]
    assert not lies, f"ingest acknowledged events while the broker was frozen: {timeline}"
    statuses = {p[2] for p in during}
    assert 503 in statuses, f"ingest never answered 503 during the outage: {timeline}"
    assert statuses <= {503, 429}, f"unexpected answers while the broker was frozen: {timeline}"


async def test_reliability_broker_frozen_readiness_says_so(broker_outage: Observed) -> None:
    ingest = {status for service, status in broker_outage.readyz if service == "ingest"}
    assert 503 in ingest, f"ingest /readyz answered {ingest} while the broker was frozen"


async def test_reliability_broker_frozen_nothing_acknowledged_is_lost(
    broker_outage: Observed,
) -> None:
    assert broker_outage.unacknowledged == 0
    assert not broker_outage.wrong, (
        f"{len(broker_outage.wrong)} customers differ after the broker came back, e.g. "
        f"{dict(list(broker_outage.wrong.items())[:3])}"
    )


# --- database frozen, then dropping connections ------------------------------------------


@pytest.fixture(scope="module")
async def database_outage(rig: Rig) -> Observed:
    """Freeze the PostgreSQL proxy, then kill it (connections reset, new ones refused)."""

    async def offsets(observed: Observed) -> None:
        observed.committed.append(await _committed(rig, "profile", topics.TOUCHPOINTS))
        observed.end_offsets.append(await rig.end_offsets([rig.topic(topics.TOUCHPOINTS)]))

    return await run_outage(
        rig,
        "dbdown",
        [
            ("frozen", rig.proxy.pause, DB_PAUSE_S, rig.proxy.resume),
            ("dropped", rig.proxy.drop, DB_DROP_S, rig.proxy.start),
        ],
        during=offsets,
    )


async def test_reliability_database_down_consumers_stop_committing(
    database_outage: Observed,
) -> None:
    # Offsets were read 2 s into each fault and again near its end: touchpoints kept arriving,
    # and the profile service, unable to store them, must not have committed past them.
    for first, last, end_first, end_last in zip(
        database_outage.committed[0::2],
        database_outage.committed[1::2],
        database_outage.end_offsets[0::2],
        database_outage.end_offsets[1::2],
        strict=True,
    ):
        assert sum(end_last.values()) > sum(end_first.values()), "no touchpoints arrived"
        assert last == first, "the profile service committed offsets while its database was down"


async def test_reliability_database_down_nothing_is_lost(database_outage: Observed) -> None:
    assert database_outage.unacknowledged == 0
    assert not database_outage.wrong, (
        f"{len(database_outage.wrong)} customers differ after the database came back, e.g. "
        f"{dict(list(database_outage.wrong.items())[:3])}"
    )


async def test_reliability_database_down_ingest_keeps_accepting(
    database_outage: Observed,
) -> None:
    during = _answered_during(database_outage)
    assert during
    assert all(p[2] == 200 for p in during), {p[2] for p in during}


def _reads(observed: Observed, fault: str) -> tuple[list[Any], set[Any]]:
    reads = [r for r in observed.reads if r[0] == fault]
    return reads, {(status, round(seconds)) for _, status, seconds in reads}


async def test_reliability_database_frozen_reads_answer_503_promptly(
    database_outage: Observed,
) -> None:
    reads, outcomes = _reads(database_outage, "frozen")
    assert reads
    assert all(r[1] in (200, 503) for r in reads), f"reads answered {outcomes}"


async def test_reliability_database_dropped_reads_answer_503(database_outage: Observed) -> None:
    reads, outcomes = _reads(database_outage, "dropped")
    assert reads
    assert all(r[1] in (200, 503) for r in reads), f"reads answered {outcomes}"


async def test_reliability_database_down_readiness_says_so(database_outage: Observed) -> None:
    profile = {status for service, status in database_outage.readyz if service == "profile"}
    assert 503 in profile, f"profile /readyz answered {profile} while its database was down"
