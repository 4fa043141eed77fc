"""The synthetic population and a smoke run of the whole-platform benchmark."""

from __future__ import annotations

from collections import defaultdict

import pytest

from clientela.platform.bench import BenchConfig, bench, percentile
from clientela.platform.population import Population, PopulationSpec, pareto_share
from clientela.shared.contracts import TouchpointRecorded


def test_population_is_deterministic_by_seed() -> None:
    first = list(Population(PopulationSpec(people=200, seed=3)).touchpoints(500))
    again = list(Population(PopulationSpec(people=200, seed=3)).touchpoints(500))
    other = list(Population(PopulationSpec(people=200, seed=4)).touchpoints(500))
    strip = [{k: v for k, v in e.items() if k != "occurred_at"} for e in first]
    assert strip == [{k: v for k, v in e.items() if k != "occurred_at"} for e in again]
    assert strip != [{k: v for k, v in e.items() if k != "occurred_at"} for e in other]


def test_population_looks_like_a_customer_base() -> None:
    events = list(Population(PopulationSpec(people=3000, seed=1)).touchpoints(30_000))
    for event in events[:500]:  # every event is a valid native touchpoint
        TouchpointRecorded.model_validate(
            {"source": "sim", "data": event, "occurred_at": event["occurred_at"]}
        )
    spend: dict[str, float] = defaultdict(float)
    identifiers_of: dict[str, set[str]] = defaultdict(set)
    for event in events:
        ids = event["identifiers"]
        person = ids.get("anonymous_id") or ids.get("email") or ids.get("customer_id", "")
        identifiers_of[person].update(ids)
        if event["kind"] == "sale":
            spend[ids["customer_id"]] += float(event["sale"]["amount"])
    kinds = {e["kind"] for e in events}
    assert {"sale", "web_visit", "email", "phone_call", "branch_visit"} <= kinds
    assert 0.6 < pareto_share(list(spend.values())) < 0.95  # roughly 80/20
    assert any(len(types) >= 3 for types in identifiers_of.values())
    assert len(spend) < 3000  # prospects exist


def test_percentile_by_nearest_rank() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 99) == 4


@pytest.mark.e2e
async def test_bench_smoke_runs_end_to_end(postgres_url: str, redis_url: str) -> None:
    config = BenchConfig(
        events=400,
        people=60,
        lookup_rate=5,
        progress=False,
        drain_timeout_s=120,
        postgres_url=postgres_url,
        redis_url=redis_url,
    )
    result, _seen = await bench(config)
    assert result["events_per_s"] > 0
    assert result["baseline_events_per_s"] > 0
    assert result["ratio"] > 0
    assert result["profile_events"] > 0
    assert result["tier_changed_events"] > 0
    assert result["accept_to_tier_changed_p99_ms"] >= result["accept_to_tier_changed_p50_ms"]
