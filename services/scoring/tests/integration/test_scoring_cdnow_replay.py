"""Replay of CDNOW's calibration weeks through ingest -> profile -> scoring, as processes.

Every sale of weeks 1-39 of the CDNOW sample is posted to ingest; profile aggregates them
and scoring re-scores each change. The streamed per-customer predictions must equal a batch
computation from the same rows at the same moment (`as_of`) within 1e-6: first with the
cold-start model, then, after a refit over HTTP, with BG/NBD + Gamma-Gamma.

The services run on the wall clock, so the calendar is shifted to make the end of the
calibration the moment of the replay. Every sale sits at the same time of day after the
shift, so days stay days (same-day sales count once), and the refit sees the ages and
recencies of the paper's calibration and finds its BG/NBD parameters.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer

from clientela.platform.launcher import Platform, PlatformSettings
from clientela.scoring.domain.clv import BgNbdParams, GammaGammaParams
from clientela.scoring.domain.facts import FactColumns, facts_of
from clientela.scoring.domain.value_model import (
    BgNbdGammaGammaModel,
    DecayedSpendModel,
    FittedParameters,
)
from clientela.scoring.evaluate import (
    CDNOW_CUTOFF,
    Transaction,
    cdnow_sample_path,
    midnight,
    profiles_of,
    read_cdnow,
)
from clientela.shared.contracts import topics
from clientela.shared.embedded_broker import free_port
from clientela.shared.settings import DEV_ADMIN_KEY, DEV_READ_KEY, DEV_WRITE_KEY, KafkaSettings

SERVICES = ("ingest", "profile", "scoring")
WRITE = {"Authorization": f"Bearer {DEV_WRITE_KEY}"}
ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {DEV_READ_KEY}"}
TOLERANCE = 1e-6
TRAIT = "cdnow_customer"


@pytest.fixture(scope="module")
def replay_platform(
    kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """Run ingest, profile and scoring as processes on SQLite, with private topics."""
    state = tmp_path_factory.mktemp("cdnow-replay")
    settings = PlatformSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers,
        data_dir=state / "data",
        topic_prefix=f"{kafka_settings.topic_prefix}cdnow.",
        ports={service: free_port() for service in (*SERVICES, "campaign")},
        extra_env={
            # Only streamed scores count here: no scheduled sweep or refit interferes.
            "SCORING_SWEEP_INTERVAL_S": "0",
            "SCORING_REFIT_INTERVAL_S": "0",
            "CLIENTELA_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "CLIENTELA_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        },
        log_level="WARNING",
    )
    platform = Platform(settings, log_dir=state / "logs")
    (state / "logs").mkdir()
    try:
        for service in SERVICES:
            platform.start_service(service)
        _wait_ready(platform)
        yield platform
    finally:
        platform.stop()


def _wait_ready(platform: Platform, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        for service in SERVICES:
            while True:
                try:
                    url = platform.settings.url(service) + "/readyz"
                    if client.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{service} not ready:\n{platform.log_tail(service)}")
                time.sleep(0.2)


@dataclass
class Streams:
    """What profile and scoring published, newest per profile."""

    customer_of: dict[str, str] = field(default_factory=dict)
    profile_version: dict[str, int] = field(default_factory=dict)
    # Sales each profile's newest version counts: a customer is settled only once all of
    # theirs were applied (a score of an earlier version can match the newest version seen
    # while later sales are still on their way).
    purchases: dict[str, int] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)


async def _follow(platform: Platform, streams: Streams) -> None:
    """Read profiles.v1 and scores.v1 from the start for as long as the test runs."""
    prefix = platform.settings.topic_prefix
    profiles, scores = prefix + topics.PROFILES.name, prefix + topics.SCORES.name
    consumer = AIOKafkaConsumer(
        profiles,
        scores,
        bootstrap_servers=platform.settings.bootstrap_servers,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue
                    data = json.loads(record.value)["data"]
                    pid = data["profile_id"]
                    if record.topic == profiles:
                        if data["version"] >= streams.profile_version.get(pid, 0):
                            streams.profile_version[pid] = data["version"]
                            streams.purchases[pid] = data["aggregates"]["purchase_count"]
                            customer = data.get("traits", {}).get(TRAIT)
                            if customer is not None:
                                streams.customer_of[pid] = customer
                    else:
                        kept = streams.scores.get(pid)
                        if kept is None or data["profile_version"] >= kept["profile_version"]:
                            streams.scores[pid] = data
    finally:
        await consumer.stop()


def _calibration() -> tuple[list[Transaction], timedelta]:
    rows = [t for t in read_cdnow(cdnow_sample_path()) if t.day <= CDNOW_CUTOFF]
    shift = datetime.now(UTC).replace(microsecond=0) - midnight(CDNOW_CUTOFF)
    return rows, shift


def _touchpoint(customer: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": at.isoformat(),
        "identifiers": {"customer_id": customer},
        "traits": {TRAIT: customer},
        **fields,
    }


def _sales(rows: list[Transaction], shift: timedelta) -> list[dict[str, Any]]:
    return [
        _touchpoint(
            t.customer_id,
            midnight(t.day) + shift,
            kind="sale",
            channel="web",
            direction="inbound",
            sale={"order_id": f"O-{n}", "amount": str(t.amount), "currency": "EUR"},
        )
        for n, t in enumerate(sorted(rows, key=lambda t: t.day))
    ]


async def _post_all(platform: Platform, events: list[dict[str, Any]]) -> None:
    url = platform.settings.url("ingest") + "/v1/touchpoints"
    async with httpx.AsyncClient(timeout=30) as client:
        for start in range(0, len(events), 250):
            chunk = events[start : start + 250]
            response = await client.post(url, json=chunk, headers=WRITE)
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == len(chunk), response.text


async def _settled(
    streams: Streams,
    customers: int,
    model_prefix: str,
    since_version: dict[str, int],
    sweep_url: str | None = None,
    sales: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Wait until every customer's newest profile version is scored by the given model.

    With `sweep_url`, sweeps each round: what only a sweep publishes (cost to serve) shows up
    once scoring has stored every change.
    """
    async with asyncio.timeout(90), httpx.AsyncClient(timeout=30) as client:
        while True:
            if sweep_url is not None:
                response = await client.post(f"{sweep_url}/v1/sweep", headers=ADMIN)
                assert response.status_code == 200, response.text
            done = {
                customer: scores
                for pid, customer in streams.customer_of.items()
                if (scores := streams.scores.get(pid)) is not None
                and scores["profile_version"] == streams.profile_version[pid]
                and scores["profile_version"] > since_version.get(pid, 0)
                and scores["model_version"].startswith(model_prefix)
                and (sales is None or streams.purchases.get(pid) == sales[customer])
            }
            if len(done) == customers:
                return done
            await asyncio.sleep(0.25)


def _batch(
    rows: list[Transaction], shift: timedelta, streamed: dict[str, dict[str, Any]]
) -> tuple[list[str], FactColumns, list[datetime]]:
    """Facts of every customer from the rows themselves, and the moment each was scored at."""
    profiles = profiles_of(rows)
    ids = [p.profile_id for p in profiles]
    facts = FactColumns.of([f for p in profiles if (f := facts_of(p)) is not None])
    seconds = shift.total_seconds()
    facts = replace(
        facts,
        first_purchase_s=facts.first_purchase_s + seconds,
        last_purchase_s=facts.last_purchase_s + seconds,
    )
    as_of = [datetime.fromisoformat(streamed[c]["as_of"]) for c in ids]
    return ids, facts, as_of


def _estimate(model: Any, facts: FactColumns, as_of: list[datetime]) -> dict[str, np.ndarray]:
    """Batch estimates, one vectorised call per distinct scoring moment."""
    out: dict[str, np.ndarray] = defaultdict(lambda: np.full(len(as_of), np.nan))
    for moment in sorted(set(as_of)):
        rows = np.flatnonzero(np.array([a == moment for a in as_of]))
        estimates = model.estimate(facts.take(rows), moment)
        for name in ("predicted_value", "expected_purchases", "probability_alive"):
            column = getattr(estimates, name)
            if column is not None:
                out[name][rows] = column
        if estimates.expected_spend is not None:
            out["expected_order_value"][rows] = estimates.expected_spend
    return dict(out)


def _assert_equal(
    ids: list[str], batch: dict[str, np.ndarray], streamed: dict[str, dict[str, Any]]
) -> None:
    for name, expected in batch.items():
        got = np.array([streamed[c][name] for c in ids], dtype=np.float64)
        worst = int(np.argmax(np.abs(got - expected)))
        assert np.allclose(got, expected, rtol=0, atol=TOLERANCE), (
            f"{name} of customer {ids[worst]}: streamed {got[worst]!r}, batch {expected[worst]!r}"
        )


async def test_streamed_predictions_equal_the_batch_computation(
    replay_platform: Platform,
) -> None:
    rows, shift = _calibration()
    customers = len({t.customer_id for t in rows})
    streams = Streams()
    follower = asyncio.create_task(_follow(replay_platform, streams))
    try:
        await _post_all(replay_platform, _sales(rows, shift))
        sales = Counter(t.customer_id for t in rows)
        cold = await _settled(streams, customers, "decayed-spend-v", {}, sales=sales)
        ids, facts, as_of = _batch(rows, shift, cold)
        _assert_equal(ids, _estimate(DecayedSpendModel(), facts, as_of), cold)
        assert {s["tier"] for s in cold.values()} == {"A", "B", "C"}

        scoring = replay_platform.settings.url("scoring")
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(f"{scoring}/v1/model/refit", headers=ADMIN)
            assert response.status_code == 200, response.text
            fitted = response.json()
        # The population the service streamed in is the paper's calibration: same BG/NBD.
        published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
        for name, value in published.items():
            assert fitted["bgnbd"][name] == pytest.approx(value, rel=0.01), fitted

        # One touchpoint that is not a sale per customer: it moves only the cost to serve,
        # which streaming stores without publishing; the sweep announces every customer,
        # now valued by BG/NBD.
        before = dict(streams.profile_version)
        now = datetime.now(UTC)
        await _post_all(
            replay_platform,
            [
                _touchpoint(c, now, kind="app_session", channel="app", direction="inbound")
                for c in sorted({t.customer_id for t in rows})
            ],
        )
        warm = await _settled(streams, customers, "bgnbd-gg-v", before, scoring)
        ids, facts, as_of = _batch(rows, shift, warm)
        model = BgNbdGammaGammaModel(_parameters(fitted), horizon_periods=52.0)
        batch = _estimate(model, facts, as_of)
        assert set(batch) == {
            "predicted_value",
            "expected_purchases",
            "probability_alive",
            "expected_order_value",
        }
        _assert_equal(ids, batch, warm)
        assert float(np.nanmax(batch["predicted_value"])) > 100
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


def _parameters(body: dict[str, Any]) -> FittedParameters:
    """Rebuild the parameters the refit answered with (GET /v1/model's shape)."""
    return FittedParameters(
        version=body["version"],
        bgnbd=BgNbdParams(**body["bgnbd"]),
        gamma_gamma=GammaGammaParams(**body["gamma_gamma"]),
        period_days=7.0,
        fitted_at=datetime.fromisoformat(body["fitted_at"]),
        as_of=datetime.fromisoformat(body["as_of"]),
        customer_count=body["customer_count"],
        repeat_customer_count=body["repeat_customer_count"],
        bgnbd_log_likelihood=body["bgnbd_log_likelihood"],
        gamma_gamma_log_likelihood=body["gamma_gamma_log_likelihood"],
    )


def test_calibration_rows_are_the_papers() -> None:
    rows, _ = _calibration()
    assert len({t.customer_id for t in rows}) == 2357
    assert min(t.day for t in rows) >= date(1997, 1, 1)
    assert sum((t.amount for t in rows), Decimal(0)) > 0
