"""CloudEvents and raw-topic records translated into touchpoints; the raw relay with fakes."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.v1 import kafka as ce_kafka
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent

from clientela.ingest.application.accept_touchpoints import Outcome, TouchpointIntake
from clientela.ingest.application.relay_raw import relay_raw_records
from clientela.ingest.domain.cloudevents import cloudevent_id, from_binary, from_structured
from clientela.ingest.domain.policy import IntakePolicy
from clientela.ingest.domain.rate_limit import RateLimiter
from clientela.ingest.domain.raw_record import RawRecord, translate_record
from clientela.ingest.domain.touchpoints import (
    IntakeContext,
    RecordedTouchpoint,
    Rejection,
    SubmittedEvent,
    record_touchpoint,
)
from clientela.shared.contracts import DeadLetterEvent, TouchpointRecorded, derived_event_id

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
VISIT: dict[str, Any] = {
    "kind": "branch_visit",
    "channel": "branch",
    "direction": "inbound",
    "identifiers": {"customer_id": "c-42"},
    "branch_visit": {"branch_id": "br-1", "purpose": "mortgage advice"},
}
ATTRIBUTES = {
    "type": "com.example.branch.visit",
    "source": "/branches/br-1",
    "id": "A234-1234-1234",
    "time": "2025-03-01T10:00:00Z",
}


def recorded(item: object) -> TouchpointRecorded:
    assert isinstance(item, SubmittedEvent), item
    result = record_touchpoint(item, IntakeContext("k", NOW, 1), IntakePolicy())
    assert isinstance(result, RecordedTouchpoint), result
    return result.event()


def test_structured_cloudevent_from_the_sdk() -> None:
    headers, body = to_structured(CloudEvent(ATTRIBUTES, VISIT))
    assert headers["content-type"] == "application/cloudevents+json"
    event = recorded(from_structured(json.loads(body), len(body)))
    assert event.event_id == cloudevent_id("/branches/br-1", "A234-1234-1234")
    assert event.source == "/branches/br-1"
    assert event.occurred_at == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert event.data.branch_visit is not None


def test_binary_cloudevent_from_the_sdk() -> None:
    headers, body = to_binary(
        CloudEvent({**ATTRIBUTES, "datacontenttype": "application/json"}, VISIT)
    )
    attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    event = recorded(from_binary(attributes, headers.get("content-type"), body))
    assert event.event_id == cloudevent_id("/branches/br-1", "A234-1234-1234")


def test_same_source_and_id_give_the_same_event_id_other_source_not() -> None:
    assert cloudevent_id("a", "1") == cloudevent_id("a", "1") != cloudevent_id("b", "1")


def test_data_base64_is_read() -> None:
    document = {
        "specversion": "1.0",
        **ATTRIBUTES,
        "data_base64": base64.b64encode(json.dumps(VISIT).encode()).decode(),
    }
    recorded(from_structured(document, 300))


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "id"),
        ({"source": None}, "source"),
        ({"datacontenttype": "text/xml"}, "datacontenttype"),
        ({"data": "not an object"}, "data"),
    ],
)
def test_invalid_cloudevents_are_rejected(change: dict[str, Any], path: str) -> None:
    document = {"specversion": "1.0", **ATTRIBUTES, "data": VISIT, **change}
    result = from_structured(document, 300)
    assert isinstance(result, Rejection)
    assert result.code == "invalid_cloudevent"
    assert result.errors[0].path == path


def raw(
    value: bytes | None, headers: Sequence[tuple[str, bytes]] = (), offset: int = 7
) -> RawRecord:
    return RawRecord("touchpoints.raw.v1", 2, offset, 1_740_826_800_000, b"k", value, list(headers))


def test_raw_native_record_gets_a_positional_id_and_the_record_time() -> None:
    event = recorded(translate_record(raw(json.dumps(VISIT).encode()), 32_768))
    assert event.event_id == derived_event_id("raw", "touchpoints.raw.v1", "2", "7")
    assert event.occurred_at == datetime(2025, 3, 1, 11, 0, tzinfo=UTC)


def test_raw_cloudevents_in_structured_and_binary_mode() -> None:
    event = CloudEvent({**ATTRIBUTES, "datacontenttype": "application/json"}, VISIT)
    expected = cloudevent_id("/branches/br-1", "A234-1234-1234")
    for message in (ce_kafka.to_structured(event), ce_kafka.to_binary(event)):
        value = message.value if isinstance(message.value, bytes) else message.value.encode()
        record = raw(value, list(message.headers.items()))
        assert recorded(translate_record(record, 32_768)).event_id == expected


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, "empty"),
        (b"{nope", "undecodable"),
        (b"[1]", "not_an_object"),
        (b"x" * 40, "oversized"),
    ],
)
def test_bad_raw_records_are_rejected_with_a_code(value: bytes | None, code: str) -> None:
    result = translate_record(raw(value), 32)
    assert isinstance(result, Rejection)
    assert result.code == code


class MemoryDedup:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    async def claim(self, event_ids: Sequence[str]) -> list[bool]:
        out = [i not in self.seen for i in event_ids]
        self.seen.update(event_ids)
        return out

    async def confirm(self, event_ids: Sequence[str]) -> None:
        pass

    async def release(self, event_ids: Sequence[str]) -> None:
        self.seen.difference_update(event_ids)


class Collector:
    def __init__(self) -> None:
        self.events: list[RecordedTouchpoint] = []
        self.dead: list[DeadLetterEvent] = []

    async def publish(self, events: Sequence[Any], accepted_at_ms: int = 0) -> None:
        for e in events:
            (self.dead if isinstance(e, DeadLetterEvent) else self.events).append(e)


async def test_relay_accepts_good_records_and_dead_letters_bad_ones_once() -> None:
    sink = Collector()
    intake = TouchpointIntake(IntakePolicy(), MemoryDedup(), sink)
    bad_value = json.dumps({**VISIT, "identifiers": {}}).encode()
    records = [raw(json.dumps(VISIT).encode(), offset=1), raw(bad_value, [("x", b"y")], offset=2)]
    for _ in range(2):  # the second delivery is a redelivery of the same batch
        report = await relay_raw_records(
            records, intake, sink, consumer="clientela-ingest", received_at=NOW, accepted_at_ms=5
        )
    assert [o.status for o in report.outcomes] == [Outcome.DUPLICATE, Outcome.REJECTED]
    assert len(sink.events) == 1
    first, again = sink.dead
    assert first.event_id == again.event_id
    letter = first.data
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "touchpoints.raw.v1",
        2,
        2,
    )
    assert letter.reason_code == "invalid"
    assert letter.errors[0].path == "identifiers"
    assert letter.original_value_b64 is not None
    assert base64.b64decode(letter.original_value_b64) == bad_value
    assert letter.original_headers == {"x": "y"}


def test_rate_limiter_refuses_beyond_the_burst_and_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(100, 200, lambda: now[0], overrides={"bulk": 1000})
    assert limiter.take("pos", 150) == 0
    assert limiter.take("pos", 100) == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.take("pos", 100) == 0
    assert limiter.take("bulk", 900) == 0
    assert RateLimiter.retry_after(0.2) == 1
    assert RateLimiter(0, 1, lambda: 0.0).take("any", 10**6) == 0
