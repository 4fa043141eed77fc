"""Fakes of the services at the HTTP boundary, for tests about the console's own logic."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from clientela.console.config import ConsoleSettings
from clientela.console.wiring import create_app
from clientela.shared.settings import DatabaseSettings

PID = "p-0001"
MERGED_PID = "p-0000"
KEYS = {"read-key": {"read"}, "admin-key": {"read", "admin"}, "write-key": {"write"}}

PROFILE = {
    "profile_id": PID,
    "version": 7,
    "created_at": "2025-01-02T09:00:00Z",
    "updated_at": "2025-03-01T09:30:00Z",
    "lifecycle": "customer",
    "identifiers": [
        {"type": "customer_id", "value": "C-1"},
        {"type": "email", "value": "grace@example.com"},
    ],
    "identifier_types": ["customer_id", "email"],
    "reachable_channels": ["email", "phone"],
    "traits": {"region": "north"},
    "consent": {
        "email": {"status": "opted_in", "updated_at": "2025-02-01T00:00:00Z", "source": "web"}
    },
    "aggregates": {
        "currency": "EUR",
        "touchpoint_count": 3,
        "counts_by_channel": {"branch": 2, "phone": 1},
        "purchase_count": 1,
        "total_spend": "120.50",
        "preferred_inbound_channel": "branch",
    },
}
TIMELINE = {
    "profile_id": PID,
    "items": [
        {
            "event_id": "e-2",
            "occurred_at": "2025-03-01T09:30:00Z",
            "kind": "phone_call",
            "channel": "phone",
            "direction": "inbound",
            "agent_id": "agent-7",
            "source": "callcentre",
            "touchpoint": {
                "kind": "phone_call",
                "channel": "phone",
                "direction": "inbound",
                "identifiers": {"customer_id": "C-1"},
                "agent": {"agent_id": "agent-7", "role": "call_agent"},
                "call": {"duration_seconds": 185, "outcome": "resolved"},
            },
        },
        {
            "event_id": "e-1",
            "occurred_at": "2025-02-01T10:00:00Z",
            "kind": "sale",
            "channel": "branch",
            "direction": "inbound",
            "agent_id": "rep-12",
            "source": "pos",
            "touchpoint": {
                "kind": "sale",
                "channel": "branch",
                "direction": "inbound",
                "identifiers": {"customer_id": "C-1"},
                "agent": {"agent_id": "rep-12", "role": "sales_rep"},
                "sale": {
                    "order_id": "o-1",
                    "amount": "120.50",
                    "currency": "EUR",
                    "items": [{"sku": "s", "category": "shoes", "quantity": 1}],
                },
            },
        },
    ],
    "next_before": "2025-02-01T10:00:00Z",
    "next_before_event_id": "e-1",
}
SCORES = {
    "profile_id": PID,
    "profile_version": 7,
    "model_version": "bgnbd-gg-v1",
    "lifecycle": "customer",
    "tier": "A",
    "tier_explanation": "One of the few customers who bring 80% of the value.",
    "predicted_value": 940.5,
    "probability_alive": 0.91,
    "segment": "relational",
    "cost_to_serve": 8.0,
    "profitable": True,
    "at_risk": False,
    "updated_at": "2025-03-01T09:31:00Z",
    "reasons": [
        {
            "code": "expected_purchases",
            "value": 3.2,
            "detail": "",
            "explanation": "We expect about 3 more purchases next year.",
        }
    ],
}
SUMMARY = {
    "model_version": "bgnbd-gg-v1",
    "profile_count": 120,
    "total_value": 10000.0,
    "tiers": [
        {"tier": "A", "count": 10, "value": 8000.0, "value_share": 0.8, "meaning": "vital few"},
        {"tier": "B", "count": 20, "value": 1500.0, "value_share": 0.15, "meaning": "next"},
        {"tier": "C", "count": 70, "value": 500.0, "value_share": 0.05, "meaning": "rest"},
        {"tier": "P", "count": 20, "value": 0.0, "value_share": 0.0, "meaning": "prospects"},
    ],
    "cutoffs": {
        "a_cutoff": 400.0,
        "b_cutoff": 60.0,
        "a_share": 0.8,
        "b_share": 0.95,
        "hysteresis": 0.05,
        "customer_count": 100,
        "total_value": 10000.0,
    },
    "pareto": [
        {"customer_share": i / 20, "value_share": min(1.0, (i / 20) ** 0.3)} for i in range(1, 21)
    ],
}


def _uplift(channel: str | None = None, tier: str | None = None) -> dict[str, Any]:
    return {
        "channel": channel,
        "tier": tier,
        "treated": {"size": 90, "converted": 18, "responded": 25, "revenue": 2200.0},
        "control": {"size": 10, "converted": 1, "responded": 1, "revenue": 100.0},
        "treated_conversion": 0.2,
        "control_conversion": 0.1,
        "uplift": 0.1,
        "uplift_ci95_low": -0.08,
        "uplift_ci95_high": 0.28,
        "incremental_conversions": 9.0,
        "incremental_revenue": 1100.0,
        "cost": 54.0,
        "roi": 19.4,
    }


ROI = {
    "campaign_id": "welcome-to-a",
    "total": _uplift(),
    "by_channel": [_uplift(channel="phone")],
    "by_tier": [_uplift(tier="A")],
    "by_channel_tier": [_uplift(channel="phone", tier="A")],
}
CAMPAIGN = {
    "id": "welcome-to-a",
    "name": "Welcome to our best customers",
    "origin": "file",
    "trigger": ["tier_entered", "tier_up"],
    "to_tiers": ["A"],
    "purpose": "loyalty",
    "channels": ["phone", "branch", "email"],
    "holdout_share": 0.1,
    "budget": None,
    "enabled": True,
}
LEARNING = {
    "campaign_id": "welcome-to-a",
    "cells": [
        {
            "channel": "phone",
            "tier": "A",
            "segment": "relational",
            "sends": 40,
            "responses": 9,
            "prior_rate": 0.1,
            "posterior_mean": 0.19,
        }
    ],
}
MESSAGES = {
    "profile_id": PID,
    "messages": [
        {
            "message_id": "m-1",
            "campaign_id": "welcome-to-a",
            "trigger_event_id": "t-1",
            "outcome": "sent",
            "channel": "phone",
            "variant": "welcome-a-v1",
            "offer": None,
            "purpose": "loyalty",
            "tier": "A",
            "reasons": [{"code": "expected_value", "value": 12.5, "detail": "best channel"}],
            "decided_at": "2025-03-01T09:32:00Z",
            "responded_at": "2025-03-02T10:00:00Z",
            "converted_at": None,
        }
    ],
}


@dataclass
class FakeServices:
    """Profile, scoring and campaign as canned answers; records every request."""

    requests: list[httpx.Request] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)

    def transport(self) -> httpx.MockTransport:
        """Return a transport that answers like the services."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request."""
        self.requests.append(request)
        service = {8082: "profile", 8083: "scoring", 8084: "campaign"}[request.url.port or 0]
        if service in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        scopes = KEYS.get(key) if key not in self.revoked else None
        if scopes is None:
            return httpx.Response(401, json={"detail": "unknown API key"})
        path = request.url.path
        admin_only = request.method != "GET"
        if ("admin" if admin_only else "read") not in scopes:
            return httpx.Response(403, json={"detail": "scope"})
        return self._route(service, request.method, path, request)

    def _route(
        self, service: str, method: str, path: str, request: httpx.Request
    ) -> httpx.Response:
        routes: dict[tuple[str, str, str], Any] = {
            ("profile", "GET", f"/v1/profiles/{PID}"): PROFILE,
            ("profile", "GET", f"/v1/profiles/{MERGED_PID}"): PROFILE,
            ("profile", "GET", "/v1/profiles/by/email/grace@example.com"): PROFILE,
            ("profile", "GET", f"/v1/profiles/{PID}/timeline"): TIMELINE,
            ("scoring", "GET", f"/v1/scores/{PID}"): SCORES,
            ("scoring", "GET", "/v1/tiers/summary"): SUMMARY,
            ("campaign", "GET", f"/v1/profiles/{PID}/messages"): MESSAGES,
            ("campaign", "GET", "/v1/campaigns"): {"campaigns": [CAMPAIGN]},
            ("campaign", "GET", "/v1/roi"): {"campaigns": [ROI]},
            ("campaign", "GET", "/v1/campaigns/welcome-to-a/roi"): ROI,
            ("campaign", "GET", "/v1/campaigns/welcome-to-a/learning"): LEARNING,
            ("campaign", "GET", "/v1/campaigns/welcome-to-a/stats"): {
                "campaign_id": "welcome-to-a",
                "enabled": True,
                "total": 100,
                "by_outcome": {"sent": 90, "control": 10},
                "sent_by_channel": {"phone": 90},
            },
        }
        if (service, method, path) == ("profile", "POST", f"/v1/profiles/{PID}/split"):
            body = json.loads(request.content)
            return httpx.Response(
                200,
                json={
                    "profile_id": PID,
                    "new_profile_id": "p-0002",
                    "identifiers_moved": len(body["identifiers"]),
                    "touchpoints_moved": 4,
                },
            )
        answer = routes.get((service, method, path))
        if answer is None:
            return httpx.Response(404, json={"detail": "not found"})
        return httpx.Response(200, json=answer)


@pytest.fixture
def fake_services() -> FakeServices:
    """Return fresh fake services."""
    return FakeServices()


def console_settings(tmp_path: Path, **values: Any) -> ConsoleSettings:
    """Return console settings on a private SQLite read model, with no broker consumer."""
    return ConsoleSettings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"),
        **values,
    )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan; yield a client talking to it (cookies kept, no redirects)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
            yield c


ConsoleFactory = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def make_console(tmp_path: Path, fake_services: FakeServices) -> ConsoleFactory:
    """Return a factory of running consoles on the fake services, with settings overridden."""

    @asynccontextmanager
    async def factory(**values: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        app = create_app(
            console_settings(tmp_path, **values),
            transport=fake_services.transport(),
            start_consumer=False,
        )
        async with running(app) as client:
            yield app, client

    return factory


@pytest.fixture
async def console(
    tmp_path: Path, fake_services: FakeServices
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Return the console app (fake services, SQLite read model) and a client of it."""
    app = create_app(
        console_settings(tmp_path), transport=fake_services.transport(), start_consumer=False
    )
    async with running(app) as client:
        yield app, client
