"""The ingest HTTP API against a real broker and a real cache (memory and Redis)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from clientela.ingest.application.ports import PublishFailedError
from clientela.ingest.config import IngestSettings
from clientela.ingest.domain.touchpoints import RecordedTouchpoint
from clientela.ingest.wiring import create_app
from clientela.shared.cache import Cache, make_cache
from clientela.shared.codec import HEADER_ACCEPTED_AT, HEADER_REFERS_TO_MESSAGE, header, now_ms
from clientela.shared.contracts import TouchpointRecorded, topics
from clientela.shared.settings import CacheSettings, KafkaSettings

from .conftest import Record, read_topic, with_event_id


def sale(event_id: str, **overrides: Any) -> dict[str, Any]:
    """Return a native sale touchpoint with a messy email to normalise."""
    payload: dict[str, Any] = {
        "event_id": event_id,
        "kind": "sale",
        "channel": "branch",
        "direction": "inbound",
        "occurred_at": "2025-03-01T09:30:00+01:00",
        "identifiers": {"email": "  Grace.Hopper@Example.COM", "phone": "(202) 555-0143"},
        "sale": {
            "order_id": "ord-1",
            "amount": "120.50",
            "currency": "eur",
            "items": [{"sku": "sku-1", "quantity": 2, "unit_price": "60.25"}],
        },
    }
    payload.update(overrides)
    return payload


def new_id() -> str:
    return f"it-{uuid.uuid4()}"


async def records_with_id(kafka: KafkaSettings, event_id: str) -> list[Record]:
    """Read the touchpoints topic from the start to its end and keep one event's records."""
    return with_event_id(await read_topic(kafka, topics.TOUCHPOINTS), event_id)


class Client:
    """An HTTP client on the app, with the development keys at hand."""

    def __init__(self, http: httpx.AsyncClient, settings: IngestSettings) -> None:
        self.http = http
        self.write_key = settings.auth.dev_write_key.get_secret_value()
        self.read_key = settings.auth.dev_read_key.get_secret_value()

    async def post(self, body: Any = None, *, key: str | None = "", **kw: Any) -> httpx.Response:
        headers = {} if key is None else {"Authorization": f"Bearer {key or self.write_key}"}
        if body is not None:
            kw["json"] = body
        return await self.http.post("/v1/touchpoints", headers=headers, **kw)


async def started(settings: IngestSettings, **overrides: Any) -> AsyncIterator[Client]:
    app = create_app(settings, **overrides)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest") as http,
    ):
        yield Client(http, settings)


@pytest.fixture
def settings(kafka_settings: KafkaSettings, cache_settings: CacheSettings) -> IngestSettings:
    # The raw-topic consumer has its own module; joining a group costs seconds per app.
    return IngestSettings(kafka=kafka_settings, cache=cache_settings, consume_raw=False)


@pytest.fixture
async def client(settings: IngestSettings) -> AsyncIterator[Client]:
    async for c in started(settings):
        yield c


async def test_sale_lands_on_the_topic_keyed_by_identity(
    client: Client, settings: IngestSettings
) -> None:
    event_id = new_id()
    before = now_ms()
    response = await client.post(sale(event_id))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 0,
        "ignored": 0,
        "results": [{"index": 0, "event_id": event_id, "status": "accepted", "errors": []}],
    }

    (record,) = await records_with_id(settings.kafka, event_id)
    expected_key = hashlib.sha256(b"email:grace.hopper@example.com").hexdigest()[:32]
    assert record.key == expected_key.encode()
    accepted_at = int(header(record.headers, HEADER_ACCEPTED_AT) or b"0")
    assert before <= accepted_at <= now_ms()
    assert record.value is not None
    event = TouchpointRecorded.model_validate_json(record.value)
    assert event.source == "dev-write"
    assert event.correlation_id == event_id
    assert event.occurred_at.isoformat() == "2025-03-01T08:30:00+00:00"
    assert event.data.identifiers.email == "grace.hopper@example.com"
    assert event.data.identifiers.phone == "+12025550143"
    assert event.data.sale is not None
    assert (str(event.data.sale.amount), event.data.sale.currency) == ("120.50", "EUR")


async def test_each_touchpoint_says_in_a_header_whether_it_names_a_campaign_message(
    client: Client, settings: IngestSettings
) -> None:
    plain, answer, clicked = new_id(), new_id(), new_id()
    click = {
        "event_id": clicked,
        "kind": "email",
        "channel": "email",
        "direction": "outbound",
        "identifiers": {"customer_id": "c-1"},
        "email": {"clicked": True, "campaign_message_id": "m-2"},
    }
    response = await client.post(
        [sale(plain), sale(answer, properties={"campaign_message_id": "m-1"}), click]
    )
    assert response.json()["accepted"] == 3, response.text

    marks = {}
    for event_id in (plain, answer, clicked):
        (record,) = await records_with_id(settings.kafka, event_id)
        marks[event_id] = header(record.headers, HEADER_REFERS_TO_MESSAGE)
    assert marks == {plain: b"0", answer: b"1", clicked: b"1"}


async def test_same_event_twice_is_published_once(client: Client, settings: IngestSettings) -> None:
    event_id = new_id()
    first = await client.post({"batch": [sale(event_id), sale(event_id)]})
    second = await client.post([sale(event_id)])
    assert [r["status"] for r in first.json()["results"]] == ["accepted", "duplicate"]
    assert second.status_code == 200
    assert second.json()["duplicates"] == 1
    assert second.json()["results"][0]["status"] == "duplicate"
    assert len(await records_with_id(settings.kafka, event_id)) == 1


async def test_invalid_events_are_rejected_with_field_paths(
    client: Client, settings: IngestSettings
) -> None:
    bad_id, good_id = new_id(), new_id()
    bad = sale(bad_id, sale={"order_id": "o", "amount": -5, "currency": "EUR"})

    alone = await client.post(bad)
    assert alone.status_code == 422
    body = alone.json()
    assert (body["accepted"], body["rejected"]) == (0, 1)
    assert body["results"][0]["errors"] == [
        {"path": "sale.amount", "reason": "Input should be greater than or equal to 0"}
    ]

    mixed = await client.post([bad, sale(good_id, identifiers={"phone": "call me maybe"}), {}])
    assert mixed.status_code == 422
    paths = [[e["path"] for e in r["errors"]] for r in mixed.json()["results"]]
    assert paths[1] == ["identifiers.phone"]
    assert "kind" in paths[2]
    assert await records_with_id(settings.kafka, bad_id) == []


@pytest.mark.parametrize(
    ("content", "status", "detail"),
    [
        (b'{"kind": ', 400, "body is not valid JSON"),
        (b'"a string"', 400, "body must be a touchpoint object"),
        (b"[" + b"{}," * 500 + b"{}]", 413, "501 events exceed the limit of 500"),
        (b" " * 600_000, 413, "body exceeds 512000 bytes"),
    ],
)
async def test_malformed_or_oversized_requests_are_refused(
    client: Client, content: bytes, status: int, detail: str
) -> None:
    response = await client.post(content=content)
    assert response.status_code == status
    assert detail in response.json()["detail"]


async def test_keys_are_required_and_need_the_write_scope(client: Client) -> None:
    assert (await client.post(sale(new_id()), key=None)).status_code == 401
    assert (await client.post(sale(new_id()), key="not-a-key")).status_code == 401
    assert (await client.post(sale(new_id()), key=client.read_key)).status_code == 403


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.http.get("/healthz")).json() == {"status": "ok"}
    ready = await client.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"broker": True, "cache": True}}


class FlakyPublisher:
    """Fails its first publish, then remembers what it was given."""

    def __init__(self) -> None:
        self.calls = 0
        self.published: list[str] = []

    async def publish(self, events: Sequence[RecordedTouchpoint], accepted_at_ms: int) -> None:
        self.calls += 1
        if self.calls == 1:
            raise PublishFailedError("broker did not acknowledge")
        self.published.extend(e.event_id for e in events)


async def test_unacknowledged_publish_is_503_and_the_retry_is_accepted(
    settings: IngestSettings,
) -> None:
    cache: Cache = make_cache(settings.cache)
    publisher = FlakyPublisher()
    event_id = new_id()
    try:
        async for client in started(settings, cache=cache, touchpoint_publisher=publisher):
            failed = await client.post(sale(event_id))
            assert failed.status_code == 503
            assert failed.headers["retry-after"] == str(settings.retry_after_s)
            retried = await client.post(sale(event_id))
            assert retried.json()["accepted"] == 1
    finally:
        await cache.close()
    assert publisher.published == [event_id]


class BrokenPublisher:
    """Fails with an error no refusal maps: a bug, not an outage."""

    async def publish(self, events: Sequence[RecordedTouchpoint], accepted_at_ms: int) -> None:
        raise RuntimeError("a bug")


async def test_an_unexpected_error_on_the_fast_lane_is_a_plain_500_and_is_raised(
    settings: IngestSettings,
) -> None:
    cache: Cache = make_cache(settings.cache)
    app = create_app(settings, cache=cache, touchpoint_publisher=BrokenPublisher())
    key = settings.auth.dev_write_key.get_secret_value()
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                base_url="http://ingest",
            ) as http,
        ):
            answer = await http.post(
                "/v1/touchpoints", json=sale(new_id()), headers={"Authorization": f"Bearer {key}"}
            )
            assert (answer.status_code, answer.text) == (500, "Internal Server Error")
            # The other routes still run behind the lane.
            assert (await http.get("/healthz")).status_code == 200
        with pytest.raises(RuntimeError, match="a bug"):
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app), base_url="http://ingest"
                ) as http,
            ):
                await http.post(
                    "/v1/touchpoints",
                    json=sale(new_id()),
                    headers={"Authorization": f"Bearer {key}"},
                )
    finally:
        await cache.close()
