"""Hostile input over HTTP: SQL injection through every lookup parameter, malformed Segment
messages, and the size limits a client controls."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from clientela_reliability_harness import ADMIN, READ, WRITE, Rig, profile_by_customer

pytestmark = pytest.mark.e2e

INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "x'; DROP TABLE identifiers; --",
    '" OR ""="',
    "1; SELECT pg_sleep(5)",
    "') UNION SELECT profile_id, state FROM profiles --",
    "%' OR '%'='",
    "\\'; DELETE FROM profiles; --",
    "$$; DROP SCHEMA public CASCADE; $$",
]


@pytest.fixture(scope="module")
async def planted(rig: Rig) -> dict[str, str]:
    """A known customer whose email is itself an injection attempt (stored as plain data)."""
    await asyncio.to_thread(rig.ensure_up)
    customer = f"SQLI-{uuid.uuid4().hex[:8]}"
    email = f"o'brien'--{uuid.uuid4().hex[:6]}@or1is1.example"
    event = {
        "event_id": f"sqli-{uuid.uuid4()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "kind": "sale",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {"customer_id": customer, "email": email},
        "sale": {"order_id": "O-sqli", "amount": "10.00", "currency": "EUR"},
    }
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            rig.url("ingest") + "/v1/touchpoints", json=event, headers=WRITE
        )
        assert response.json()["accepted"] == 1, response.text
        async with asyncio.timeout(60):
            while (profile := await profile_by_customer(client, rig, customer)) is None:
                await asyncio.sleep(0.3)
    return {"customer": customer, "email": email, "profile_id": profile["profile_id"]}


def _lookups(payload: str) -> list[tuple[str, str]]:
    """Every GET that takes an identifier, with the payload in each parameter."""
    p = quote(payload, safe="")
    return [
        ("profile", f"/v1/profiles/by/customer_id/{p}"),
        ("profile", f"/v1/profiles/by/email/{p}"),
        ("profile", f"/v1/profiles/by/{p}/anything"),
        ("profile", f"/v1/profiles/{p}"),
        ("profile", f"/v1/profiles/{p}/timeline"),
        ("profile", f"/v1/profiles/{p}/timeline?before_event_id={p}"),
        ("profile", f"/v1/profiles/{p}/timeline?kind={p}&channel={p}&before={p}"),
        ("scoring", f"/v1/scores/{p}"),
        ("campaign", f"/v1/campaigns/{p}"),
        ("campaign", f"/v1/campaigns/{p}/stats"),
        ("campaign", f"/v1/campaigns/{p}/roi"),
        ("campaign", f"/v1/campaigns/{p}/learning"),
        ("campaign", f"/v1/profiles/{p}/messages"),
        ("campaign", f"/v1/profiles/{p}/messages?limit={p}"),
    ]


async def _counts(rig: Rig) -> dict[str, int]:
    schema = rig.schema("profile")
    counts = {}
    for table in ("profiles", "identifiers", "touchpoints"):
        counts[table] = int((await rig.sql(f'SELECT count(*) FROM "{schema}"."{table}"'))[0][0])
    return counts


async def test_security_sql_injection_through_every_lookup_is_harmless(
    rig: Rig, planted: dict[str, str]
) -> None:
    await rig.wait_quiet(60)
    before = await _counts(rig)
    wrong: list[str] = []
    async with httpx.AsyncClient(timeout=15) as client:
        for payload in INJECTIONS:
            for service, path in _lookups(payload):
                started = asyncio.get_running_loop().time()
                response = await client.get(rig.url(service) + path, headers=ADMIN)
                took = asyncio.get_running_loop().time() - started
                # Not found, an empty answer or refused as malformed: never data, never a
                # server error, never a sleep executed on the database's side.
                empty = response.status_code == 200 and not any(
                    v for v in response.json().values() if isinstance(v, list | dict)
                )
                if (response.status_code not in (400, 404, 422) and not empty) or took > 4:
                    wrong.append(f"{service} {path}: {response.status_code} in {took:.1f}s")
        # The store is intact and the planted customer is still found by its exact values.
        assert await _counts(rig) == before
        profile = await profile_by_customer(client, rig, planted["customer"])
        assert profile is not None
        assert profile["profile_id"] == planted["profile_id"]
        by_email = await client.get(
            f"{rig.url('profile')}/v1/profiles/by/email/{quote(planted['email'], safe='')}",
            headers=READ,
        )
        assert by_email.status_code == 200, by_email.text
        assert by_email.json()["profile_id"] == planted["profile_id"]
    assert not wrong, "\n".join(wrong)


async def test_security_segment_message_with_a_non_string_type_is_rejected(up: Rig) -> None:
    body: dict[str, Any] = {"batch": [{"type": [], "userId": "u-1", "event": "x"}]}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(up.url("ingest") + "/v1/batch", json=body, headers=WRITE)
    assert response.status_code in (200, 400), response.status_code


async def test_security_client_controlled_sizes_are_limited(up: Rig) -> None:
    """Body, batch, event and string sizes and page sizes all have limits (413/422, not 5xx)."""
    url = up.url("ingest") + "/v1/touchpoints"
    visit = {
        "kind": "web_visit",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {"anonymous_id": "a"},
    }
    async with httpx.AsyncClient(timeout=30) as client:
        body = await client.post(
            url,
            content=b"[" + b" " * 600_000 + b"]",
            headers={**WRITE, "content-type": "application/json"},
        )
        batch = await client.post(url, json=[visit] * 501, headers=WRITE)
        event = await client.post(url, json={**visit, "note": "x" * 40_000}, headers=WRITE)
        long_id = await client.post(
            url, json={**visit, "identifiers": {"anonymous_id": "a" * 5_000}}, headers=WRITE
        )
        page = await client.get(
            f"{up.url('profile')}/v1/profiles/nobody/timeline?limit=100000", headers=READ
        )
        messages = await client.get(
            f"{up.url('campaign')}/v1/profiles/nobody/messages?limit=100000", headers=READ
        )
    assert body.status_code == 413
    assert batch.status_code == 413
    for answer in (event, long_id):
        # Refused whole (422) or as that event's rejection: never accepted, never a 5xx.
        assert answer.status_code in (200, 413, 422), answer.status_code
        if answer.status_code == 200:
            assert answer.json()["results"][0]["status"] == "rejected"
    assert page.status_code == 422
    assert messages.status_code == 422
