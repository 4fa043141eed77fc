"""HTTP read API: golden record, identifier lookup, timeline, auth and health."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from clientela.profile.application.handle_touchpoints import handle_touchpoints
from clientela.profile.application.ports import ReceivedTouchpoint
from clientela.profile.config import ProfileSettings
from clientela.profile.wiring import Container, create_app
from clientela.shared.settings import (
    DEV_ADMIN_KEY,
    DEV_READ_KEY,
    DEV_WRITE_KEY,
    DatabaseSettings,
    KafkaSettings,
)

READ = {"Authorization": f"Bearer {DEV_READ_KEY}"}
ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}


class StubPublisher:
    """Stands in for the broker: these tests are about the read side."""

    def __init__(self) -> None:
        self.records: list = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, records) -> None:
        self.records.extend(records)

    async def ready(self) -> bool:
        return True


@pytest.fixture
async def app(database_settings: DatabaseSettings) -> AsyncIterator[FastAPI]:
    settings = ProfileSettings(database=database_settings, kafka=KafkaSettings(create_topics=False))
    app = create_app(settings, consume=False, publisher=StubPublisher())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://profile") as client:
        yield client


@pytest.fixture
async def profile_id(app: FastAPI, tp, policy) -> str:
    container: Container = app.state.container
    events = [
        tp(
            kind="web_visit",
            email="eve@example.com",
            at="2024-05-01T10:00:00Z",
            traits={"city": "Oslo"},
        ),
        tp(
            kind="sale",
            channel="web",
            amount="30",
            email="eve@example.com",
            phone="+4790000000",
            at="2024-05-02T10:00:00Z",
            consent={"email": "opted_in"},
        ),
        tp(
            kind="phone_call",
            channel="phone",
            phone="+4790000000",
            at="2024-05-03T10:00:00Z",
            agent_id="agent-7",
        ),
    ]
    await handle_touchpoints(
        [ReceivedTouchpoint.of(e) for e in events], container.unit_of_work(), container.policy
    )
    found = await container.reader.find(("email", "eve@example.com"))
    assert found is not None
    return found


async def test_golden_record(client, profile_id) -> None:
    response = await client.get(f"/v1/profiles/{profile_id}", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert body["profile_id"] == profile_id
    assert body["version"] == 1
    assert body["identifiers"] == [
        {"type": "email", "value": "eve@example.com"},
        {"type": "phone", "value": "+4790000000"},
    ]
    assert body["identifier_types"] == ["email", "phone"]
    assert body["reachable_channels"] == ["email", "sms", "phone"]
    assert body["traits"] == {"city": "Oslo"}
    assert body["consent"]["email"]["status"] == "opted_in"
    assert body["aggregates"]["purchase_count"] == 1
    assert body["aggregates"]["total_spend"] == "30.0000"
    assert body["lifecycle"] in {"customer", "lapsed"}


async def test_lookup_by_identifier(client, profile_id) -> None:
    response = await client.get("/v1/profiles/by/email/%20EVE@Example.com%20", headers=READ)
    assert response.status_code == 200
    assert response.json()["profile_id"] == profile_id
    by_phone = await client.get("/v1/profiles/by/phone/+4790000000", headers=READ)
    assert by_phone.json()["profile_id"] == profile_id
    missing = await client.get("/v1/profiles/by/email/nobody@example.com", headers=READ)
    assert missing.status_code == 404


async def test_timeline(client, profile_id) -> None:
    url = f"/v1/profiles/{profile_id}/timeline"
    first = (await client.get(url, params={"limit": 2}, headers=READ)).json()
    assert [i["kind"] for i in first["items"]] == ["phone_call", "sale"]
    assert first["items"][0]["agent_id"] == "agent-7"
    assert first["next_before"] is not None
    rest = (
        await client.get(
            url,
            params={
                "limit": 2,
                "before": first["next_before"],
                "before_event_id": first["next_before_event_id"],
            },
            headers=READ,
        )
    ).json()
    assert [i["kind"] for i in rest["items"]] == ["web_visit"]
    assert rest["next_before"] is None
    sales = (await client.get(url, params={"channel": "phone"}, headers=READ)).json()
    assert [i["channel"] for i in sales["items"]] == ["phone"]
    assert (await client.get(url, params={"limit": 501}, headers=READ)).status_code == 422
    assert (await client.get(url, params={"kind": "fax"}, headers=READ)).status_code == 422


async def test_unknown_profile_is_404(client, app) -> None:
    assert (await client.get("/v1/profiles/nope", headers=READ)).status_code == 404
    assert (await client.get("/v1/profiles/nope/timeline", headers=READ)).status_code == 404


async def test_keys_are_required(client, profile_id) -> None:
    assert (await client.get(f"/v1/profiles/{profile_id}")).status_code == 401
    wrong = {"Authorization": "Bearer not-a-key"}
    assert (await client.get(f"/v1/profiles/{profile_id}", headers=wrong)).status_code == 401
    write_only = {"X-API-Key": DEV_WRITE_KEY}
    assert (await client.get(f"/v1/profiles/{profile_id}", headers=write_only)).status_code == 403


async def test_health_and_readiness(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "broker": True}


async def test_admin_routes_need_the_admin_scope(client, profile_id) -> None:
    url = f"/v1/profiles/{profile_id}"
    assert (await client.delete(url, headers=READ)).status_code == 403
    consent = {"status": "opted_out", "source": "desk"}
    assert (await client.put(f"{url}/consent/email", json=consent, headers=READ)).status_code == 403
    split = {"identifiers": [{"type": "phone", "value": "+4790000000"}]}
    assert (await client.post(f"{url}/split", json=split, headers=READ)).status_code == 403


async def test_consent_update(client, profile_id) -> None:
    url = f"/v1/profiles/{profile_id}/consent/sms"
    body = {"status": "opted_out", "source": "branch-desk", "occurred_at": "2024-06-01T10:00:00Z"}
    response = await client.put(url, json=body, headers=ADMIN)
    assert response.status_code == 200
    record = response.json()
    assert record["consent"]["sms"] == {
        "status": "opted_out",
        "updated_at": "2024-06-01T10:00:00Z",
        "source": "branch-desk",
    }
    assert record["version"] == 2
    missing = await client.put("/v1/profiles/nope/consent/sms", json=body, headers=ADMIN)
    assert missing.status_code == 404


async def test_split_then_erase(client, profile_id) -> None:
    split = {"identifiers": [{"type": "phone", "value": "+47 900 00 000"}], "reason": "twins"}
    response = await client.post(f"/v1/profiles/{profile_id}/split", json=split, headers=ADMIN)
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["profile_id"] == profile_id
    assert outcome["identifiers_moved"] == 1
    new_id = outcome["new_profile_id"]
    by_phone = await client.get("/v1/profiles/by/phone/+4790000000", headers=READ)
    assert by_phone.json()["profile_id"] == new_id
    refused = await client.post(f"/v1/profiles/{new_id}/split", json=split, headers=ADMIN)
    assert refused.status_code == 409

    erased = await client.delete(f"/v1/profiles/{new_id}?request_id=dsr-9", headers=ADMIN)
    assert erased.status_code == 200
    receipt = erased.json()
    assert receipt["profile_id"] == new_id
    assert receipt["request_id"] == "dsr-9"
    assert receipt["identifiers_removed"] == 1
    assert (await client.get(f"/v1/profiles/{new_id}", headers=READ)).status_code == 404
    again = await client.delete(f"/v1/profiles/{new_id}", headers=ADMIN)
    assert again.json() == receipt
    assert (await client.delete("/v1/profiles/nope", headers=ADMIN)).status_code == 404


async def test_lookup_answers_as_the_declared_route(client, app, profile_id) -> None:
    from clientela.profile.adapters.inbound.http import ProfileView

    url = "/v1/profiles/by/email/eve@example.com"
    response = await client.get(url, headers=READ)
    assert response.headers["content-type"] == "application/json"
    view = ProfileView.model_validate_json(response.content)
    assert response.content == view.model_dump_json().encode()
    assert (await client.get(url)).json() == {"detail": "an API key is required"}
    unknown = await client.get(url, headers={"Authorization": "Bearer not-a-key"})
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == "Bearer"
    forbidden = await client.get(url, headers={"X-API-Key": DEV_WRITE_KEY})
    assert forbidden.json() == {"detail": "this key lacks the 'read' scope"}
    missing = await client.get("/v1/profiles/by/email/nobody@example.com", headers=READ)
    assert missing.json() == {"detail": "identifier not found"}
    documented = app.openapi()["paths"]["/v1/profiles/by/{identifier_type}/{value}"]["get"]
    schema = documented["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ProfileView"}
    assert {"401", "403", "404"} <= set(documented["responses"])
