"""The console's pages against fake services: sign-in, sessions, CSRF, and each page."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from clientela.console.config import ConsoleSettings
from clientela.console.wiring import CONSOLE_DLQ
from clientela.shared.contracts import (
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    ProfilesMerged,
    ProfilesMergedEvent,
    ScoresUpdated,
    ScoresUpdatedEvent,
    TierChanged,
    TierChangedEvent,
)
from clientela.shared.settings import AuthSettings

Console = tuple[FastAPI, httpx.AsyncClient]


def csrf_of(html: str) -> str:
    """Return the CSRF token a page's forms carry."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """Sign in through the form, as a browser would."""
    page = await client.get("/login")
    return await client.post(
        "/login", data={"api_key": key, "csrf_token": csrf_of(page.text), "next": "/customers"}
    )


async def test_pages_need_a_session_and_come_back_after_sign_in(console: Console) -> None:
    _, client = console
    answer = await client.get("/customers/p-0001")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fcustomers%2Fp-0001"
    page = await client.get(answer.headers["location"])
    answer = await client.post(
        "/login",
        data={"api_key": "read-key", "csrf_token": csrf_of(page.text), "next": "/customers/p-0001"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/customers/p-0001"


async def test_the_session_cookie_is_httponly_strict_and_hides_the_key(console: Console) -> None:
    _, client = console
    answer = await sign_in(client, "read-key")
    cookie = answer.headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    value = cookie.split(";")[0].split("=", 1)[1]
    payload = base64.b64decode(value.split(".")[0] + "==")
    assert b"read-key" not in payload
    assert "read-key" not in json.dumps(json.loads(payload))


async def test_unknown_and_non_reading_keys_are_refused(console: Console) -> None:
    _, client = console
    answer = await sign_in(client, "nobody")
    assert answer.status_code == 401
    assert "do not know this key" in answer.text
    answer = await sign_in(client, "write-key")
    assert answer.status_code == 403
    assert (await client.get("/customers")).status_code == 303


async def test_a_post_without_the_csrf_token_is_refused(console: Console) -> None:
    _, client = console
    await client.get("/login")
    answer = await client.post("/login", data={"api_key": "read-key", "csrf_token": "forged"})
    assert answer.status_code == 403
    await sign_in(client, "admin-key")
    answer = await client.post("/customers/p-0001/split", data={"identifier": "email:x"})
    assert answer.status_code == 403
    answer = await client.post("/logout", data={})
    assert answer.status_code == 403


async def test_sign_in_does_not_redirect_off_site(console: Console) -> None:
    _, client = console
    page = await client.get("/login")
    answer = await client.post(
        "/login",
        data={"api_key": "read-key", "csrf_token": csrf_of(page.text), "next": "//evil.example"},
    )
    assert answer.headers["location"] == "/customers"


async def test_security_headers_on_every_page(console: Console) -> None:
    _, client = console
    answer = await client.get("/login")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"


async def test_search_by_identifier_leads_to_the_360_view(
    console: Console, fake_services: Any
) -> None:
    _, client = console
    page = await sign_in(client, "read-key")
    page = await client.get("/customers")
    answer = await client.post(
        "/customers/search",
        data={"id_type": "email", "value": " grace@example.com ", "csrf_token": csrf_of(page.text)},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/customers/p-0001"
    answer = await client.post(
        "/customers/search",
        data={"id_type": "email", "value": "nobody@example.com", "csrf_token": csrf_of(page.text)},
    )
    assert answer.status_code == 404
    assert "No customer has that identifier" in answer.text


async def test_the_360_view_shows_every_part(console: Console) -> None:
    _, client = console
    await sign_in(client, "read-key")
    page = await client.get("/customers/p-0001")
    assert page.status_code == 200
    text = page.text
    for expected in (
        "grace@example.com",  # identifiers
        "120.50 EUR",  # golden record
        "One of the few customers who bring 80%",  # tier explanation
        "We expect about 3 more purchases",  # reason explained
        "agent-7 (call agent)",  # who handled it
        "call of 3m05s, resolved",  # how
        "rep-12 (sales rep)",
        "opted in",  # consent
        "welcome-to-a",  # campaign message
        "sent; responded",
        "Older touchpoints",  # paging
    ):
        assert expected in text, expected
    assert "Unmerge" not in text  # a read key sees no admin action


async def test_a_merged_id_redirects_to_its_survivor(console: Console) -> None:
    _, client = console
    await sign_in(client, "read-key")
    answer = await client.get("/customers/p-0000")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/customers/p-0001"


async def test_a_service_down_costs_its_part_not_the_page(
    console: Console, fake_services: Any
) -> None:
    _, client = console
    await sign_in(client, "read-key")
    fake_services.down.add("scoring")
    page = await client.get("/customers/p-0001")
    assert page.status_code == 200
    assert "Scoring is not available" in page.text
    assert "grace@example.com" in page.text


async def test_a_revoked_key_ends_the_session(console: Console, fake_services: Any) -> None:
    _, client = console
    await sign_in(client, "read-key")
    fake_services.revoked.add("read-key")
    answer = await client.get("/customers/p-0001")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert (await client.get("/customers")).status_code == 303


async def test_an_admin_splits_identifiers_off(console: Console, fake_services: Any) -> None:
    _, client = console
    await sign_in(client, "admin-key")
    page = await client.get("/customers/p-0001")
    assert "Unmerge" in page.text
    answer = await client.post(
        "/customers/p-0001/split",
        data={
            "identifier": ["email:grace@example.com"],
            "reason": "shared mailbox",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert answer.status_code == 303
    split = [r for r in fake_services.requests if r.url.path.endswith("/p-0001/split")]
    assert json.loads(split[-1].content) == {
        "identifiers": [{"type": "email", "value": "grace@example.com"}],
        "reason": "shared mailbox",
    }
    page = await client.get("/customers/p-0001")
    assert "into profile p-0002" in page.text


async def test_a_read_key_cannot_split(console: Console, fake_services: Any) -> None:
    _, client = console
    await sign_in(client, "read-key")
    page = await client.get("/customers/p-0001")
    answer = await client.post(
        "/customers/p-0001/split",
        data={"identifier": ["email:grace@example.com"], "csrf_token": csrf_of(page.text)},
    )
    assert answer.status_code == 303
    assert not [r for r in fake_services.requests if r.method == "POST" and "p-0001" in str(r.url)]
    assert "needs an admin key" in (await client.get("/customers/p-0001")).text


async def test_the_customer_base_draws_the_read_model(console: Console) -> None:
    app, client = console
    container = app.state.container
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    aggregates = ProfileAggregates(currency="EUR", counts_by_channel={"branch": 3, "web": 1})
    from clientela.console.application.projection import project

    await project(
        [
            TierChangedEvent(
                occurred_at=now,
                source="scoring",
                data=TierChanged(
                    profile_id="p-0001",
                    profile_version=1,
                    from_tier=None,
                    to_tier="C",
                    move="entered",
                    lifecycle="customer",
                    predicted_value=10,
                    model_version="m",
                ),
            ),
            TierChangedEvent(
                occurred_at=now,
                source="scoring",
                data=TierChanged(
                    profile_id="p-0001",
                    profile_version=2,
                    from_tier="C",
                    to_tier="B",
                    move="up",
                    lifecycle="customer",
                    predicted_value=100,
                    model_version="m",
                ),
            ),
            ScoresUpdatedEvent(
                occurred_at=now,
                source="scoring",
                data=ScoresUpdated(
                    profile_id="p-0001",
                    profile_version=2,
                    model_version="m",
                    lifecycle="customer",
                    tier="B",
                    predicted_value=100,
                ),
            ),
            ProfileChangedEvent(
                occurred_at=now,
                source="profile",
                data=ProfileChanged(
                    profile_id="p-0001",
                    version=2,
                    lifecycle="customer",
                    created_at=now,
                    aggregates=aggregates,
                ),
            ),
            ProfilesMergedEvent(
                occurred_at=now,
                source="profile",
                data=ProfilesMerged(
                    survivor_id="p-0001",
                    merged_id="p-0000",
                    rule="shared_touchpoint:email+customer_id",
                    identifier_types=["email"],
                    identifier_fingerprints=[
                        __import__("hashlib").sha256(b"email:grace@example.com").hexdigest()
                    ],
                ),
            ),
        ],
        container.read_model,
    )
    await sign_in(client, "read-key")
    page = await client.get("/base")
    assert page.status_code == 200
    assert 'class="chart pareto"' in page.text
    assert "C→B" in page.text
    assert "Touchpoints per channel, by tier" in page.text
    page = await client.get("/customers/p-0001")
    assert (
        "linked p-0000" in page.text or "with p-0000" in page.text
    )  # the identifier that linked the merge
    assert "shared_touchpoint:email+customer_id" in page.text
    assert "entered" in page.text
    assert "p-0001" in (await client.get("/customers")).text  # highest value list


async def test_campaign_pages_show_uplift_and_learning(console: Console) -> None:
    _, client = console
    await sign_in(client, "read-key")
    page = await client.get("/campaigns")
    assert "Welcome to our best customers" in page.text
    assert "not yet proof" in page.text
    page = await client.get("/campaigns/welcome-to-a")
    assert page.status_code == 200
    for expected in ("+10.0 pts", "-8.0 … +28.0", "19.40", "believed now", "19.0%"):
        assert expected in page.text, expected
    assert (await client.get("/campaigns/nope")).status_code == 404


async def test_the_console_runs_without_its_read_model(make_console: Any) -> None:
    async with make_console(read_model=False) as (_, client):
        await sign_in(client, "read-key")
        page = await client.get("/base")
        assert page.status_code == 200
        assert "need the console&#39;s read model" in page.text
        assert (await client.get("/readyz")).status_code == 200


def test_a_placeholder_secret_is_refused_outside_development() -> None:
    production = AuthSettings(
        environment="production",
        api_keys=[{"name": "k", "sha256": "0" * 64, "scopes": ["read"]}],  # type: ignore[list-item]
    )
    with pytest.raises(ValueError, match="CONSOLE_SESSION_SECRET"):
        ConsoleSettings(auth=production)
    assert ConsoleSettings(auth=production, session_secret="x" * 40).http_port == 8085  # type: ignore[arg-type]
    assert CONSOLE_DLQ.name == "console.dlq.v1"
