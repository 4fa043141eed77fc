"""Trace context carried from record to record, through the shared BatchProcessor and codec."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence

import pytest
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clientela.shared import tracing
from clientela.shared.codec import EncodedEvent, OutgoingRecord, encoded_rows, to_record
from clientela.shared.consumer import BatchProcessor, Incoming
from clientela.shared.contracts import Envelope, topics
from clientela.shared.http import create_app, noop_lifespan
from clientela.shared.tracing import TraceContext

Handler = Callable[[list[Incoming[Envelope]]], Awaitable[None]]
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Step(Envelope):
    """A test event; the chain's hops derive one from another."""

    EVENT_TYPE = "test.step"


class FakePublisher:
    """Collects what a processor publishes (dead letters)."""

    def __init__(self) -> None:
        self.records: list[OutgoingRecord] = []

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        self.records += records


def consumed(records: Sequence[OutgoingRecord]) -> list[ConsumerRecord[bytes | None, bytes | None]]:
    """Return produced records as a consumer would receive them."""
    return [
        ConsumerRecord(r.topic, 0, offset, 0, 0, r.key, r.value, None, 0, 0, tuple(r.headers))
        for offset, r in enumerate(records)
    ]


def trace_id(record: OutgoingRecord) -> str | None:
    """Return the trace id a record carries."""
    found = TraceContext.from_headers(record.headers)
    return found.trace_id if found is not None else None


def parent_span_id(record: OutgoingRecord) -> str:
    """Return the span id in a record's traceparent."""
    found = TraceContext.from_headers(record.headers)
    assert found is not None
    return f"{found.span_context().span_id:016x}"


def processor(topic: str, derive: Handler) -> BatchProcessor:
    """Return a processor of `topic` whose handler is `derive`."""
    return BatchProcessor(
        contracts={topic: Step},
        handler=derive,
        publisher=FakePublisher(),  # type: ignore[arg-type]
        dead_letter_topic="dlq",
        consumer_name=f"test-{topic}",
    )


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Record spans in memory for one test, as an SDK configured by OTLP settings would."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    assert tracing.recording()
    yield exporter
    provider.shutdown()


def test_a_trace_context_round_trips_through_kafka_headers() -> None:
    carried = TraceContext.from_headers([("traceparent", PARENT.encode()), ("x", b"y")])

    assert carried is not None
    assert carried.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert TraceContext.from_headers(carried.headers()) == carried
    assert TraceContext.from_mapping(carried.as_dict()) == carried


def test_trace_fields_are_copied_sorted_and_sent_as_received() -> None:
    received = [("tracestate", b"k=v"), ("traceparent", PARENT.encode()), ("baggage", b"b=1")]
    carried = TraceContext.from_headers(received)

    assert carried is not None
    assert carried.fields == (("baggage", "b=1"), ("traceparent", PARENT), ("tracestate", "k=v"))
    assert carried.headers() == sorted(received)
    assert TraceContext.from_headers(carried.headers()) == carried
    assert {carried, TraceContext.from_headers(received)} == {carried}
    with pytest.raises(AttributeError):
        carried.fields = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    "value",
    [b"garbage", b"00-00000000000000000000000000000000-b7ad6b7169203331-01", b""],
)
def test_an_invalid_traceparent_is_not_carried(value: bytes) -> None:
    assert TraceContext.from_headers([("traceparent", value)]) is None


def test_a_new_trace_is_valid_sampled_and_unique() -> None:
    first, second = TraceContext.new(), TraceContext.new()

    assert first.span_context().is_valid
    assert first.span_context().trace_flags.sampled
    assert first.trace_id != second.trace_id


async def test_one_trace_id_follows_a_touchpoint_through_every_hop() -> None:
    # Ingest: a request's trace on each record it publishes.
    other = Step(source="ingest")
    touchpoint = Step(source="ingest")
    touchpoints = [
        to_record("touchpoints", "k", other, trace=TraceContext.new()),
        to_record("touchpoints", "k", touchpoint, trace=TraceContext.new()),
    ]
    profiles: list[OutgoingRecord] = []
    tiers: list[OutgoingRecord] = []
    deferred: list[Incoming[Envelope]] = []

    async def profile(batch: list[Incoming[Envelope]]) -> None:
        # Two touchpoints of one person coalesce into one change, caused by the last.
        *earlier, last = batch
        change = Step(source="profile", causation_id=last.event.event_id)
        linked = [i.event.event_id for i in earlier]
        profiles.append(to_record("profiles", "p", change, linked_causes=linked))

    async def scoring(batch: list[Incoming[Envelope]]) -> None:
        for item in batch:
            tier = Step(source="scoring", causation_id=item.event.event_id)
            tiers.append(to_record("tier-changes", "p", tier))

    async def campaign(batch: list[Incoming[Envelope]]) -> None:
        deferred.extend(batch)  # decided later, outside the batch

    await processor("touchpoints", profile)(consumed(touchpoints))
    await processor("profiles", scoring)(consumed(profiles))
    await processor("tier-changes", campaign)(consumed(tiers))
    (waiting,) = deferred
    message = to_record(
        "campaign-messages",
        "p",
        Step(source="campaign", causation_id=waiting.event.event_id),
        trace=waiting.trace,
    )

    expected = trace_id(touchpoints[-1])
    assert expected is not None
    assert trace_id(touchpoints[0]) != expected
    assert [trace_id(r) for r in (*profiles, *tiers, message)] == [expected] * 3


def test_an_event_derived_outside_a_batch_or_request_carries_no_trace() -> None:
    record = to_record("t", "k", Step(source="sweep", causation_id="not-in-any-batch"))

    assert TraceContext.from_headers(record.headers) is None


async def test_with_an_sdk_each_record_is_processed_in_a_child_span_and_coalescing_links(
    spans: InMemorySpanExporter,
) -> None:
    first, second = Step(source="ingest"), Step(source="ingest")
    touchpoints = [
        to_record("touchpoints", "k", first, trace=TraceContext.new()),
        to_record("touchpoints", "k", second, trace=TraceContext.new()),
    ]
    out: list[OutgoingRecord] = []

    async def profile(batch: list[Incoming[Envelope]]) -> None:
        change = Step(source="profile", causation_id=second.event_id)
        out.append(to_record("profiles", "p", change, linked_causes=[first.event_id]))

    await processor("touchpoints", profile)(consumed(touchpoints))

    finished = {s.name: s for s in spans.get_finished_spans() if s.name.startswith("create")}
    processed = [s for s in spans.get_finished_spans() if s.name == "process touchpoints"]
    assert len(processed) == 2
    incoming = {f"{s.parent.span_id:016x}" for s in processed if s.parent is not None}
    assert incoming == {parent_span_id(r) for r in touchpoints}
    create = finished["create profiles"]
    (change,) = out
    # The change continues the last touchpoint's trace, in its own span, linked to the other.
    assert trace_id(change) == trace_id(touchpoints[1])
    assert parent_span_id(change) == f"{create.context.span_id:016x}"
    (link,) = create.links
    assert f"{link.context.trace_id:032x}" == trace_id(touchpoints[0])


async def test_with_an_sdk_an_encoded_event_coalescing_causes_gets_its_own_linked_span(
    spans: InMemorySpanExporter,
) -> None:
    first, second = Step(source="ingest"), Step(source="ingest")
    touchpoints = [
        to_record("touchpoints", "k", first, trace=TraceContext.new()),
        to_record("touchpoints", "k", second, trace=TraceContext.new()),
    ]
    out: list[OutgoingRecord] = []

    async def profile(batch: list[Incoming[Envelope]]) -> None:
        change = EncodedEvent(
            topics.PROFILES, "p", Step, "c-1", b"{}", None, second.event_id, (first.event_id,)
        )
        out.extend(OutgoingRecord(*r) for r in encoded_rows([change], lambda _: "profiles"))

    await processor("touchpoints", profile)(consumed(touchpoints))

    create = next(s for s in spans.get_finished_spans() if s.name == "create profiles")
    (change,) = out
    assert trace_id(change) == trace_id(touchpoints[1])
    assert parent_span_id(change) == f"{create.context.span_id:016x}"
    (link,) = create.links
    assert f"{link.context.trace_id:032x}" == trace_id(touchpoints[0])


def test_an_http_request_runs_in_its_callers_trace_or_starts_one() -> None:
    app = create_app(
        title="Clientela test", description="", lifespan=noop_lifespan, readiness=lambda _: {}
    )

    @app.get("/trace")
    async def current() -> dict[str, str]:
        return {"trace_id": tracing.current().trace_id}

    with TestClient(app) as client:
        given = client.get("/trace", headers={"traceparent": PARENT}).json()["trace_id"]
        started = client.get("/trace").json()["trace_id"]
        again = client.get("/trace").json()["trace_id"]

    assert given == "0af7651916cd43dd8448eb211c80319c"
    assert started not in (given, again)


def test_with_an_sdk_an_http_request_gets_a_server_span_named_by_route(
    spans: InMemorySpanExporter,
) -> None:
    app: FastAPI = create_app(
        title="Clientela test", description="", lifespan=noop_lifespan, readiness=lambda _: {}
    )

    @app.get("/v1/people/{email}")
    async def person(email: str) -> dict[str, str]:
        return {"trace_id": tracing.current().trace_id}

    with TestClient(app) as client:
        answer = client.get("/v1/people/ada@example.com", headers={"traceparent": PARENT})

    assert answer.json()["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    (server,) = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert server.name == "GET /v1/people/{email}"
    assert "ada@example.com" not in str(dict(server.attributes or {}))


def test_a_handler_outside_the_shared_middleware_can_enter_the_requests_trace() -> None:
    scope = {"type": "http", "method": "POST", "headers": [(b"traceparent", PARENT.encode())]}

    with tracing.request_context(scope, "/v1/touchpoints"):
        inside = tracing.current()
    with tracing.request_context({"type": "http", "method": "POST", "headers": []}):
        started = tracing.current()

    assert inside.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert started.trace_id != inside.trace_id
    assert TraceContext.of(otel_context.get_current()) is None  # left as it was found
