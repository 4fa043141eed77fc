"""Prometheus metrics of the shared HTTP app and BatchProcessor."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
from aiokafka import ConsumerRecord
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from clientela.shared import metrics
from clientela.shared.codec import OutgoingRecord, to_record
from clientela.shared.consumer import BatchProcessor, Incoming, RetryPolicy
from clientela.shared.contracts import Envelope
from clientela.shared.http import create_app, noop_lifespan
from clientela.shared.settings import DEV_READ_KEY, AuthSettings


class Ping(Envelope):
    """A test event."""

    EVENT_TYPE = "test.ping"


class FakePublisher:
    """Collects published records."""

    def __init__(self) -> None:
        self.records: list[OutgoingRecord] = []

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        self.records += records


def app_with_routes(auth: AuthSettings | None = None) -> FastAPI:
    """Return a shared app with one route that has a path parameter."""
    app = create_app(
        title="Clientela test",
        description="",
        lifespan=noop_lifespan,
        readiness=lambda _: {},
        auth=auth,
    )

    @app.get("/v1/profiles/by/{kind}/{value}")
    async def lookup(kind: str, value: str) -> dict[str, str]:
        return {"kind": kind}

    return app


def sample(name: str, **labels: str) -> float:
    """Return the current value of a sample of the default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_requests_are_counted_by_route_template_never_by_path() -> None:
    route = "/v1/profiles/by/{kind}/{value}"
    before = sample("clientela_http_requests_total", method="GET", route=route, status="200")

    with TestClient(app_with_routes()) as client:
        client.get("/v1/profiles/by/email/grace.hopper@example.com")
        client.get("/nowhere/grace.hopper@example.com")
        exposition = client.get("/metrics")

    assert exposition.status_code == 200
    assert exposition.headers["content-type"].startswith("text/plain")
    text = exposition.text
    assert sample("clientela_http_requests_total", method="GET", route=route, status="200") == (
        before + 1
    )
    assert sample("clientela_http_request_duration_seconds_count", method="GET", route=route) >= (
        before + 1
    )
    assert 'route="unmatched",status="404"' in text
    assert "grace.hopper" not in text


def test_metrics_can_require_a_key_with_a_scope() -> None:
    with TestClient(app_with_routes(AuthSettings(metrics_scope="read"))) as client:
        assert client.get("/metrics").status_code == 401
        allowed = client.get("/metrics", headers={"Authorization": f"Bearer {DEV_READ_KEY}"})
    assert allowed.status_code == 200
    assert "clientela_http_requests_total" in allowed.text


def test_a_service_that_serves_its_own_metrics_keeps_them() -> None:
    app = app_with_routes()

    @app.get("/metrics")
    async def own() -> Response:
        return Response("own_metric 1\n", media_type="text/plain")

    with TestClient(app) as client:
        assert client.get("/metrics").text == "own_metric 1\n"


def test_a_service_registry_is_exposed_with_the_shared_metrics() -> None:
    app = app_with_routes()
    registry = CollectorRegistry()
    Counter("clientela_test_things", "Things.", registry=registry).inc(3)
    metrics.add_registry(app, registry)

    with TestClient(app) as client:
        text = client.get("/metrics").text

    assert "clientela_test_things_total 3.0" in text
    assert "clientela_http_requests_total" in text


def consumed(produced: Sequence[OutgoingRecord]) -> list[ConsumerRecord[bytes, bytes]]:
    """Return produced records as a consumer receives them."""
    return [
        ConsumerRecord(r.topic, 0, i, 0, 0, r.key, r.value, None, 0, 0, tuple(r.headers))
        for i, r in enumerate(produced)
    ]


async def test_batches_records_dead_letters_and_failures_are_counted() -> None:
    consumer = f"test-{uuid.uuid4().hex[:8]}"
    failures = [RuntimeError("database away")]

    async def handler(batch: list[Incoming[Envelope]]) -> None:
        if failures:
            raise failures.pop()

    def processor(attempts: int) -> BatchProcessor:
        return BatchProcessor(
            contracts={"pings": Ping},
            handler=handler,
            publisher=FakePublisher(),  # type: ignore[arg-type]
            dead_letter_topic="dlq",
            consumer_name=consumer,
            retry=RetryPolicy(attempts=attempts, first_delay_s=0.0),
        )

    accepted = to_record("pings", "k", Ping(source="test"), accepted_at_ms=1_000)
    broken = OutgoingRecord("pings", b"k", b"{broken")

    await processor(attempts=2)(consumed([accepted, broken]))
    failures.append(RuntimeError("still away"))
    with pytest.raises(RuntimeError):
        await processor(attempts=1)(consumed([accepted]))

    assert sample("clientela_consumer_batches_total", consumer=consumer, outcome="ok") == 1
    assert sample("clientela_consumer_batches_total", consumer=consumer, outcome="failed") == 1
    assert sample("clientela_consumer_records_total", consumer=consumer, topic="pings") == 3
    dead = sample("clientela_consumer_dead_letters_total", consumer=consumer, reason="undecodable")
    assert dead == 1
    assert sample("clientela_consumer_handler_failures_total", consumer=consumer) == 2
    assert sample("clientela_consumer_batch_duration_seconds_count", consumer=consumer) == 2
    assert sample("clientela_consumer_chain_latency_seconds_count", consumer=consumer) == 2
