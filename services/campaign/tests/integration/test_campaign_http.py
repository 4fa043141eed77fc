"""The HTTP API, through the real app and its lifespan, on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from clientela.campaign.adapters.inbound.wire import inputs_from_events
from clientela.campaign.config import CampaignSettings
from clientela.campaign.wiring import Container, create_app
from clientela.shared.contracts import Channel
from clientela.shared.settings import DEV_ADMIN_KEY, DEV_READ_KEY, DEV_WRITE_KEY, DatabaseSettings

READ = {"Authorization": f"Bearer {DEV_READ_KEY}"}
ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}

NEW_CAMPAIGN = {
    "id": "win-back-lapsed",
    "name": "We miss you",
    "trigger": ["inactivity"],
    "inactive_days": 90,
    "to_tiers": ["B", "C"],
    "lifecycles": ["lapsed"],
    "purpose": "win_back",
    "channels": ["email", "sms"],
    "variants": {"B": "miss-you-b", "C": "miss-you-c"},
    "offer_variants": {"price": "miss-you-discount"},
    "budget": "500.00",
    "holdout_share": 0.2,
}


@pytest.fixture
async def app(database_settings: DatabaseSettings) -> AsyncIterator[FastAPI]:
    application = create_app(CampaignSettings(database=database_settings), consume=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://campaign") as http:
        yield http


@pytest.mark.parametrize(
    "path",
    [
        "/v1/campaigns",
        "/v1/campaigns/welcome-to-a",
        "/v1/campaigns/welcome-to-a/stats",
        "/v1/campaigns/welcome-to-a/roi",
        "/v1/campaigns/welcome-to-a/learning",
        "/v1/roi",
        "/v1/profiles/p-1/messages",
    ],
)
async def test_every_read_endpoint_needs_a_read_key(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers={"X-API-Key": "nope"})).status_code == 401
    forbidden = await client.get(path, headers={"X-API-Key": DEV_WRITE_KEY})
    assert forbidden.status_code == 403


async def test_changing_campaigns_needs_the_admin_scope(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/campaigns", json=NEW_CAMPAIGN)).status_code == 401
    assert (await client.post("/v1/campaigns", json=NEW_CAMPAIGN, headers=READ)).status_code == 403
    put = await client.put("/v1/campaigns/win-back-lapsed", json=NEW_CAMPAIGN, headers=READ)
    assert put.status_code == 403


async def test_health_and_readiness_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True}


async def test_campaigns_are_listed_file_ones_first(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/campaigns", headers=READ)

    assert response.status_code == 200
    campaigns = response.json()["campaigns"]
    assert [c["id"] for c in campaigns] == [
        "welcome-to-a",
        "grow-to-b",
        "slipping-a",
        "prospect-acquisition",
    ]
    assert campaigns[0]["origin"] == "file"
    assert campaigns[0]["trigger"] == ["tier_entered", "tier_up"]
    assert campaigns[0]["channels"] == ["phone", "branch", "email", "sms"]
    assert campaigns[0]["variants"] == {"A": "welcome-a-v1"}


async def test_a_campaign_is_created_listed_updated_and_file_ones_are_protected(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/v1/campaigns", json=NEW_CAMPAIGN, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["origin"] == "api"
    assert created.json()["budget"] == "500.00"

    again = await client.post("/v1/campaigns", json=NEW_CAMPAIGN, headers=ADMIN)
    assert again.status_code == 409

    ids = [c["id"] for c in (await client.get("/v1/campaigns", headers=READ)).json()["campaigns"]]
    assert ids[-1] == "win-back-lapsed"

    changed = {**NEW_CAMPAIGN, "inactive_days": 120, "enabled": False}
    updated = await client.put("/v1/campaigns/win-back-lapsed", json=changed, headers=ADMIN)
    assert updated.status_code == 200
    one = await client.get("/v1/campaigns/win-back-lapsed", headers=READ)
    assert (one.json()["inactive_days"], one.json()["enabled"]) == (120, False)

    file_one = {**NEW_CAMPAIGN, "id": "welcome-to-a"}
    protected = await client.put("/v1/campaigns/welcome-to-a", json=file_one, headers=ADMIN)
    assert protected.status_code == 409
    unknown = await client.put(
        "/v1/campaigns/nope", json={**NEW_CAMPAIGN, "id": "nope"}, headers=ADMIN
    )
    assert unknown.status_code == 404
    mismatch = await client.put("/v1/campaigns/other", json=NEW_CAMPAIGN, headers=ADMIN)
    assert mismatch.status_code == 422


async def test_an_invalid_campaign_is_refused_with_the_reason(client: httpx.AsyncClient) -> None:
    loyalty_for_prospects = {**NEW_CAMPAIGN, "lifecycles": ["prospect"]}

    response = await client.post("/v1/campaigns", json=loyalty_for_prospects, headers=ADMIN)

    assert response.status_code == 422
    assert "win_back campaigns are for customers only" in response.text


async def test_stats_roi_learning_and_messages_show_the_decisions(
    app: FastAPI, client: httpx.AsyncClient, events, treatment_profile_ids
) -> None:
    container: Container = app.state.container
    sent, suppressed = treatment_profile_ids[:2]
    tier_sent, tier_suppressed = events.tier(sent, 1), events.tier(suppressed, 1)
    await container.decider.handle_batch(
        inputs_from_events(
            [
                events.profile(sent, 1, reachable=(Channel.EMAIL,)),
                events.profile(suppressed, 1, reachable=()),
                tier_sent,
                tier_suppressed,
            ]
        ),
        container.unit_of_work(),
    )

    stats = await client.get("/v1/campaigns/welcome-to-a/stats", headers=READ)
    assert stats.status_code == 200
    assert stats.json() == {
        "campaign_id": "welcome-to-a",
        "enabled": True,
        "total": 2,
        "by_outcome": {"sent": 1, "control": 0, "suppressed": 1},
        "sent_by_channel": {"email": 1},
    }
    roi = (await client.get("/v1/campaigns/welcome-to-a/roi", headers=READ)).json()
    assert roi["total"]["treated"]["size"] == 1
    assert roi["total"]["control"]["size"] == 0
    assert roi["total"]["uplift"] is None  # no control yet: no claim
    assert roi["total"]["cost"] == pytest.approx(0.05)
    assert roi["by_channel"][0]["channel"] == "email"
    everything = (await client.get("/v1/roi", headers=READ)).json()
    assert len(everything["campaigns"]) == 4

    learning = (await client.get("/v1/campaigns/welcome-to-a/learning", headers=READ)).json()
    (cell,) = learning["cells"]
    assert (cell["channel"], cell["tier"], cell["sends"], cell["responses"]) == ("email", "A", 1, 0)
    assert cell["posterior_mean"] < cell["prior_rate"]

    messages = await client.get(f"/v1/profiles/{sent}/messages?limit=5", headers=READ)
    assert messages.status_code == 200
    (message,) = messages.json()["messages"]
    assert message["trigger_event_id"] == tier_sent.event_id
    assert message["outcome"] == "sent"
    assert message["channel"] == "email"
    assert message["reasons"][0]["code"] == "trigger"
    assert any(r["code"] == "channel_value" for r in message["reasons"])


async def test_unknown_campaign_and_bad_limit_are_refused(client: httpx.AsyncClient) -> None:
    for path in ("stats", "roi", "learning"):
        assert (await client.get(f"/v1/campaigns/nope/{path}", headers=READ)).status_code == 404
    assert (await client.get("/v1/campaigns/nope", headers=READ)).status_code == 404
    bad_limit = await client.get("/v1/profiles/p-1/messages?limit=0", headers=READ)
    assert bad_limit.status_code == 422
    empty = await client.get("/v1/profiles/p-unknown/messages", headers=READ)
    assert empty.json() == {"profile_id": "p-unknown", "messages": []}
