"""The HTTP read API, through the real app and its lifespan, on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from clientela.campaign.application.decide_campaigns import CampaignInputs
from clientela.campaign.application.ports import ReceivedTrigger
from clientela.campaign.config import CampaignSettings
from clientela.campaign.wiring import Container, create_app
from clientela.shared.settings import DEV_READ_KEY, DEV_WRITE_KEY, DatabaseSettings

READ = {"Authorization": f"Bearer {DEV_READ_KEY}"}


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
    "path", ["/v1/campaigns", "/v1/campaigns/welcome-to-a/stats", "/v1/profiles/p-1/messages"]
)
async def test_every_endpoint_needs_a_read_key(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers={"X-API-Key": "nope"})).status_code == 401
    forbidden = await client.get(path, headers={"X-API-Key": DEV_WRITE_KEY})
    assert forbidden.status_code == 403


async def test_health_and_readiness_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True}


async def test_campaigns_are_listed_in_file_order(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/campaigns", headers=READ)

    assert response.status_code == 200
    campaigns = response.json()["campaigns"]
    assert [c["id"] for c in campaigns] == [
        "welcome-to-a",
        "grow-to-b",
        "slipping-a",
        "prospect-acquisition",
    ]
    assert campaigns[0]["trigger"] == ["tier_entered", "tier_up"]
    assert campaigns[0]["channels"] == ["phone", "branch", "email", "sms"]
    assert campaigns[0]["variants"] == {"A": "welcome-a-v1"}


async def test_stats_and_messages_show_the_decisions(
    app: FastAPI, client: httpx.AsyncClient, events, treatment_profile_ids
) -> None:
    container: Container = app.state.container
    sent, suppressed = treatment_profile_ids[:2]
    tier_sent, tier_suppressed = events.tier(sent, 1), events.tier(suppressed, 1)
    await container.decider.handle_batch(
        CampaignInputs(
            [events.profile(sent, 1), events.profile(suppressed, 1, reachable=())],
            [ReceivedTrigger(tier_sent), ReceivedTrigger(tier_suppressed)],
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
        "sent_by_channel": {"phone": 1},
    }
    messages = await client.get(f"/v1/profiles/{sent}/messages?limit=5", headers=READ)
    assert messages.status_code == 200
    (message,) = messages.json()["messages"]
    assert message["trigger_event_id"] == tier_sent.event_id
    assert message["outcome"] == "sent"
    assert message["channel"] == "phone"
    assert message["reasons"][0]["code"] == "tier_move"


async def test_unknown_campaign_and_bad_limit_are_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/campaigns/nope/stats", headers=READ)).status_code == 404
    bad_limit = await client.get("/v1/profiles/p-1/messages?limit=0", headers=READ)
    assert bad_limit.status_code == 422
    empty = await client.get("/v1/profiles/p-unknown/messages", headers=READ)
    assert empty.json() == {"profile_id": "p-unknown", "messages": []}
