"""No personal data in logs: the services run at DEBUG for the whole session; their logs are
searched for every email, phone and name any test sent (valid, rejected, looked up)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from clientela_reliability_harness import READ, WRITE, Rig, profile_by_customer

pytestmark = pytest.mark.e2e


def _people(tag: str) -> list[dict[str, str]]:
    return [
        {
            "customer_id": f"LOG-{tag}-{n}",
            "email": f"Xantippe.Moravec{n}.{tag}@Secret.example",
            "phone": f"(202) 555-01{n:02d}",
            "e164": f"+120255501{n:02d}",
            "first_name": f"Xantippe{tag[:4]}{n}",
            "last_name": f"Moravec{tag[:4]}{n}",
        }
        for n in range(4)
    ]


def _touchpoint(person: dict[str, str], **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"log-{uuid.uuid4()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "kind": "phone_call",
        "channel": "phone",
        "direction": "inbound",
        "identifiers": {
            "customer_id": person["customer_id"],
            "email": person["email"],
            "phone": person["phone"],
        },
        "traits": {"first_name": person["first_name"], "last_name": person["last_name"]},
        "call": {"duration_seconds": 60, "outcome": "answered"},
        "note": f"Spoke to {person['first_name']} {person['last_name']}",
    }
    event.update(changes)
    return event


async def test_security_no_personal_data_in_any_log(up: Rig) -> None:
    tag = uuid.uuid4().hex[:8]
    people = _people(tag)
    for person in people:
        up.personal_data.update(
            {
                person["email"],
                person["email"].lower(),
                person["e164"],
                person["first_name"],
                person["last_name"],
            }
        )
    good, rejected_phone, rejected_shape = people[0], people[1], people[2]
    async with httpx.AsyncClient(timeout=10) as client:
        ingest = up.url("ingest")
        accepted = await client.post(
            ingest + "/v1/touchpoints",
            json=[_touchpoint(good), _touchpoint(people[3])],
            headers=WRITE,
        )
        assert accepted.json()["accepted"] == 2, accepted.text
        # Rejected events: their reasons must not quote the values.
        bad_phone = _touchpoint(rejected_phone)
        bad_phone["identifiers"]["phone"] = f"call {rejected_phone['last_name']} maybe"
        up.personal_data.add(bad_phone["identifiers"]["phone"])
        await client.post(ingest + "/v1/touchpoints", json=bad_phone, headers=WRITE)
        await client.post(
            ingest + "/v1/touchpoints",
            json=_touchpoint(rejected_shape, kind="sale", sale={"amount": "x"}),
            headers=WRITE,
        )
        await client.post(
            ingest + "/v1/identify",
            json={
                "userId": people[3]["customer_id"],
                "traits": {"email": people[3]["email"], "firstName": people[3]["first_name"]},
            },
            auth=(WRITE.get("Authorization", "").removeprefix("Bearer "), ""),
        )
        # Lookups by personal values, found and not found.
        for person in people:
            await client.get(
                f"{up.url('profile')}/v1/profiles/by/email/{quote(person['email'].lower())}",
                headers=READ,
            )
            await client.get(
                f"{up.url('profile')}/v1/profiles/by/phone/{quote(person['e164'])}",
                headers=READ,
            )
        async with asyncio.timeout(60):
            while await profile_by_customer(client, up, good["customer_id"]) is None:
                await asyncio.sleep(0.3)
    await up.wait_quiet(90)

    logs = up.logs()
    assert "DEBUG" in logs, "the services are expected to log at DEBUG in this suite"
    leaked = sorted(value for value in up.personal_data if value and value in logs)
    lines = [line[:200] for line in logs.splitlines() if any(v in line for v in leaked)]
    assert not leaked, f"{len(leaked)} personal value(s) in the logs, e.g. {lines[:5]}"
