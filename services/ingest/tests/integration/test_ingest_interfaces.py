"""Segment, CloudEvents, metrics, limits and the OpenAPI description against a live ingest."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent
from segment.analytics import Client as SegmentClient

from clientela.ingest.config import IngestSettings
from clientela.ingest.domain.cloudevents import cloudevent_id
from clientela.ingest.wiring import create_app
from clientela.shared.auth import hash_key
from clientela.shared.contracts import TouchpointRecorded, topics
from clientela.shared.embedded_broker import free_port
from clientela.shared.settings import ApiKeySpec, AuthSettings, KafkaSettings

from .conftest import LiveIngest, read_topic, with_event_id

WRITE = "dev-write-key"
READ = "dev-read-key"


def recorded(records: list[Any], event_id: str) -> TouchpointRecorded:
    (record,) = with_event_id(records, event_id)
    return TouchpointRecorded.model_validate_json(record.value)


async def test_official_segment_library_just_works(
    live_ingest: LiveIngest, kafka_settings: KafkaSettings
) -> None:
    errors: list[Any] = []
    ids = {name: f"seg-{name}-{uuid.uuid4()}" for name in ("order", "identify", "page", "gz")}

    def use_the_library() -> None:
        client = SegmentClient(
            WRITE, host=live_ingest.url, on_error=lambda e, _batch: errors.append(e), max_retries=1
        )
        client.track(
            user_id="019mr8mf4r",
            event="Order Completed",
            properties={
                "order_id": "50314b8e9bcf000000000000",
                "revenue": 25.0,
                "currency": "USD",
                "products": [{"product_id": "p-1", "sku": "45790-32", "price": 19, "quantity": 1}],
            },
            context={"traits": {"email": "peter@example.com"}},
            message_id=ids["order"],
        )
        client.identify(
            user_id="019mr8mf4r",
            traits={"plan": "premium", "email": "Peter@Example.com"},
            message_id=ids["identify"],
        )
        client.page(
            anonymous_id="anon-1",
            name="Home",
            properties={"url": "https://www.example.com/"},
            message_id=ids["page"],
        )
        client.flush()
        client.join()
        gzipped = SegmentClient(WRITE, host=live_ingest.url, gzip=True, sync_mode=True)
        gzipped.track(user_id="u-2", event="Call Completed", message_id=ids["gz"])

    await asyncio.to_thread(use_the_library)
    assert errors == []
    records = await read_topic(kafka_settings, topics.TOUCHPOINTS)
    sale = recorded(records, ids["order"]).data
    assert sale.sale is not None
    assert (str(sale.sale.amount), sale.identifiers.email) == ("25.0", "peter@example.com")
    assert recorded(records, ids["identify"]).data.traits["plan"] == "premium"
    assert recorded(records, ids["page"]).data.kind.value == "web_visit"
    assert recorded(records, ids["gz"]).data.kind.value == "phone_call"


async def test_segment_write_key_as_basic_user_or_in_the_body(live_ingest: LiveIngest) -> None:
    message = {"userId": "u-1", "event": "Order Completed", "properties": {}}
    async with httpx.AsyncClient(base_url=live_ingest.url) as http:
        in_body = await http.post("/v1/track", json={**message, "writeKey": WRITE})
        basic = await http.post("/v1/track", json=message, auth=(WRITE, ""))
        unknown = await http.post("/v1/track", json=message, auth=("nope", ""))
        missing = await http.post("/v1/track", json=message)
        read_only = await http.post("/v1/track", json={**message, "writeKey": READ})
    # The sale lacks an order id: a precise 400 that Segment libraries do not retry.
    assert in_body.status_code == basic.status_code == 400
    assert in_body.json()["success"] is False
    assert in_body.json()["results"][0]["errors"][0]["path"] == "sale.order_id"
    assert (unknown.status_code, missing.status_code, read_only.status_code) == (401, 401, 403)


async def test_cloudevents_over_http_in_every_mode(
    live_ingest: LiveIngest, kafka_settings: KafkaSettings
) -> None:
    def event(n: int) -> CloudEvent:
        attributes = {"type": "com.example.visit", "source": "/web", "id": f"ce-{uuid.uuid4()}-{n}"}
        data = {
            "kind": "web_visit",
            "channel": "web",
            "direction": "inbound",
            "identifiers": {"anonymous_id": f"a-{n}"},
            "web_visit": {"url": "https://example.com/"},
        }
        return CloudEvent(attributes, data)

    structured, binary, first, second = (event(n) for n in range(4))
    headers_s, body_s = to_structured(structured)
    headers_b, body_b = to_binary(binary)
    batch = [json.loads(to_structured(e)[1]) for e in (first, second)]
    auth = {"Authorization": f"Bearer {WRITE}"}
    async with httpx.AsyncClient(base_url=live_ingest.url, headers=auth) as http:
        answers = [
            await http.post("/v1/touchpoints", content=body_s, headers=headers_s),
            await http.post("/v1/touchpoints", content=body_b, headers=headers_b),
            await http.post(
                "/v1/touchpoints",
                content=json.dumps(batch),
                headers={"content-type": "application/cloudevents-batch+json"},
            ),
            await http.post("/v1/touchpoints", content=body_s, headers=headers_s),
        ]
    assert [a.json()["accepted"] for a in answers] == [1, 1, 2, 0]
    assert answers[3].json()["duplicates"] == 1
    records = await read_topic(kafka_settings, topics.TOUCHPOINTS)
    for e in (structured, binary, first, second):
        assert recorded(records, cloudevent_id(e["source"], e["id"])).source == "/web"


async def test_metrics_count_outcomes_and_latency(live_ingest: LiveIngest) -> None:
    async with httpx.AsyncClient(base_url=live_ingest.url) as http:
        await http.post("/v1/page", json={"anonymousId": "a"}, auth=(WRITE, ""))
        await http.post("/v1/touchpoints", json={}, headers={"X-API-Key": WRITE})
        metrics = await http.get("/metrics")  # open, like /healthz (CLIENTELA_METRICS_SCOPE)
    assert metrics.status_code == 200
    text = metrics.text
    assert 'clientela_ingest_events_total{interface="segment",outcome="accepted"}' in text
    assert 'clientela_ingest_rejections_total{interface="native",reason="invalid"}' in text
    assert 'clientela_ingest_request_duration_seconds_bucket{endpoint="touchpoints"' in text
    assert "clientela_ingest_publish_duration_seconds_count" in text


@pytest.fixture
async def limited(kafka_settings: KafkaSettings) -> AsyncIterator[httpx.AsyncClient]:
    auth = AuthSettings(
        api_keys=[ApiKeySpec(name="tiny", sha256=hash_key("tiny-key"), scopes=frozenset({"write"}))]
    )
    settings = IngestSettings(
        kafka=kafka_settings,
        auth=auth,
        consume_raw=False,
        rate_limit_events_per_s=1000,
        rate_limit_burst=2000,
        rate_limits={"tiny": 2},
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest") as http,
    ):
        yield http


async def test_rate_limit_per_key_answers_429_with_retry_after(limited: httpx.AsyncClient) -> None:
    visit = {"anonymousId": "a", "properties": {"url": "https://example.com/"}}
    answers = [await limited.post("/v1/page", json=visit, auth=("tiny-key", "")) for _ in range(6)]
    codes = [a.status_code for a in answers]
    assert codes[:4] == [200] * 4
    assert codes[-1] == 429
    assert int(answers[-1].headers["retry-after"]) >= 1
    other = await limited.post("/v1/page", json=visit, auth=(WRITE, ""))
    assert other.status_code == 200


async def test_keys_never_appear_in_logs(
    limited: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = ["tiny-key", "unknown-secret-key", WRITE]
    with caplog.at_level(logging.DEBUG):
        await limited.post("/v1/touchpoints", json=[{}], headers={"X-API-Key": "tiny-key"})
        await limited.post("/v1/track", json={"writeKey": "unknown-secret-key", "event": "x"})
        basic = base64.b64encode(f"{WRITE}:".encode()).decode()
        await limited.post(
            "/v1/batch", content=b"{oops", headers={"Authorization": f"Basic {basic}"}
        )
    assert caplog.records
    for secret in secrets:
        assert secret not in caplog.text


async def test_unreachable_broker_is_503_with_retry_after() -> None:
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{free_port()}", create_topics=False, request_timeout_ms=1000
    )
    app = create_app(IngestSettings(kafka=kafka, consume_raw=False))
    visit = {"anonymousId": "a", "properties": {"url": "https://example.com/"}}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest") as http,
    ):
        answer = await http.post("/v1/page", json=visit, auth=(WRITE, ""))
        ready = await http.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert ready.status_code == 503


def test_openapi_fuzzing_finds_no_server_error(live_ingest: LiveIngest) -> None:
    schema = schemathesis.openapi.from_url(f"{live_ingest.url}/openapi.json")
    headers = {"Authorization": f"Bearer {WRITE}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @hypothesis.settings(
            max_examples=12,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy())
        def probe(case: Any) -> None:
            response = case.call(base_url=live_ingest.url, headers=headers, timeout=10)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path}: {response.status_code}")

        probe()
    assert failures == []
