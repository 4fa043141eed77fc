"""HTTP routes with an in-memory read model: auth, 404, explanations and the tier summary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from clientela.scoring.adapters.inbound.http import build_router
from clientela.scoring.application.ports import ScoreRecord, StoredScore, TierTotal
from clientela.scoring.application.service import ScoringApplication, ScoringConfig
from clientela.scoring.domain.facts import CustomerFacts
from clientela.shared.auth import KeyRing
from clientela.shared.contracts import Lifecycle, Reason, ScoresUpdated, Tier
from clientela.shared.settings import DEV_ADMIN_KEY, DEV_READ_KEY, DEV_WRITE_KEY, AuthSettings

UPDATED_AT = datetime(2025, 6, 1, tzinfo=UTC)


def stored(profile_id: str, tier: Tier, value: float) -> StoredScore:
    return StoredScore(
        ScoresUpdated(
            profile_id=profile_id,
            profile_version=2,
            model_version="decayed-spend-v0",
            lifecycle=Lifecycle.PROSPECT if tier is Tier.P else Lifecycle.CUSTOMER,
            tier=tier,
            predicted_value=value,
            reasons=[
                Reason(code="predicted_value", value=value, detail="EUR"),
                Reason(code="days_since_last_purchase", value=12.0),
                Reason(code="a_cutoff", value=90.0, detail="top customers bringing 80%"),
                Reason(code="something_new", value=3, detail="a future reason"),
            ],
        ),
        UPDATED_AT,
    )


class FakeReader:
    def __init__(self) -> None:
        self.rows = {
            "p-a": stored("p-a", Tier.A, 90.0),
            "p-b": stored("p-b", Tier.B, 10.0),
            "p-p": stored("p-p", Tier.P, 0.0),
        }

    async def get(self, profile_id: str) -> StoredScore | None:
        return self.rows.get(profile_id)

    async def tier_totals(self) -> list[TierTotal]:
        totals: dict[Tier, TierTotal] = {}
        for s in self.rows.values():
            t = totals.get(s.tier, TierTotal(s.tier, 0, 0.0))
            totals[s.tier] = TierTotal(s.tier, t.count + 1, t.value + s.scores.predicted_value)
        return list(totals.values())


@pytest.fixture
async def client(uow: object) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(build_router(KeyRing.from_settings(AuthSettings())))
    reader = FakeReader()
    application = ScoringApplication(ScoringConfig(), uow)  # type: ignore[arg-type]
    application.population.apply(
        ScoreRecord(
            profile_id=s.scores.profile_id,
            profile_version=s.profile_version,
            lifecycle=s.scores.lifecycle,
            tier=s.tier,
            predicted_value=s.scores.predicted_value,
            at_risk=s.scores.at_risk,
            state=s.scores.model_dump_json().encode(),
            revision=1,
            tier_seq=1,
            facts=None
            if s.tier is Tier.P
            else CustomerFacts(1, 1, 0.0, 0.0, s.scores.predicted_value, 0.0),
            prospect_features=None,
            updated_at=UPDATED_AT,
        )
        for s in reader.rows.values()
    )
    app.state.api = application
    app.state.reader = reader
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as http:
        yield http


READ = {"Authorization": f"Bearer {DEV_READ_KEY}"}


@pytest.mark.parametrize("path", ["/v1/scores/p-a", "/v1/tiers/summary"])
async def test_a_key_is_required(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers={"X-API-Key": "wrong"})).status_code == 401
    write_only = {"X-API-Key": DEV_WRITE_KEY}
    assert (await client.get(path, headers=write_only)).status_code == 403


async def test_unknown_profile_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/scores/nobody", headers=READ)
    assert response.status_code == 404


async def test_scores_come_with_explanations(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/scores/p-a", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert (body["tier"], body["predicted_value"], body["profile_version"]) == ("A", 90.0, 2)
    assert body["tier_explanation"].startswith("Tier A")
    explained = {r["code"]: r["explanation"] for r in body["reasons"]}
    assert explained["predicted_value"].startswith("We expect this person to be worth about 90")
    assert explained["days_since_last_purchase"] == "Their last purchase was 12 day(s) ago."
    assert "at least 90" in explained["a_cutoff"]
    assert explained["something_new"] == "a future reason: 3."
    assert body["updated_at"].startswith("2025-06-01T00:00:00")


async def test_tier_summary(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/tiers/summary", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "decayed-spend-v0"
    assert body["profile_count"] == 3
    tiers = {t["tier"]: (t["count"], t["value_share"]) for t in body["tiers"]}
    assert tiers == {"A": (1, 0.9), "B": (1, 0.1), "C": (0, 0.0), "P": (1, 0.0)}
    assert body["cutoffs"] == {
        "a_cutoff": 90.0,
        "b_cutoff": 10.0,
        "a_share": 0.8,
        "b_share": 0.95,
        "hysteresis": 0.05,
        "customer_count": 2,
        "total_value": 100.0,
    }
    assert body["pareto"][-1] == {"customer_share": 1.0, "value_share": 1.0}


async def test_refit_needs_the_admin_scope_and_enough_data(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/model/refit", headers=READ)).status_code == 403
    admin = {"X-API-Key": DEV_ADMIN_KEY}
    response = await client.post("/v1/model/refit", headers=admin)
    assert response.status_code == 409
    assert "a fit needs at least" in response.json()["detail"]
    model = await client.get("/v1/model", headers=READ)
    assert model.json() == {"model_version": "decayed-spend-v0", "parameters": None}


async def test_sweep_on_demand(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/sweep", headers={"X-API-Key": DEV_ADMIN_KEY})
    assert response.status_code == 200
    assert response.json()["customers"] == 2
