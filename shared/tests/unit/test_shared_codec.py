"""The one outgoing-event path: an encoded event becomes the same record as its model would."""

from __future__ import annotations

import pytest

from clientela.shared import tracing
from clientela.shared.codec import (
    HEADER_SCHEMA_VERSION,
    HEADER_TYPE,
    EncodedEvent,
    OutgoingEvent,
    OutgoingRecord,
    Row,
    encoded_rows,
    header,
    to_record,
)
from clientela.shared.contracts import ProfileChangedEvent, TopicSpec, TouchpointRecorded, topics
from clientela.shared.tracing import TraceContext

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def touchpoint() -> TouchpointRecorded:
    """Return a small valid touchpoint event."""
    return TouchpointRecorded.model_validate(
        {
            "source": "test",
            "causation_id": "cause-1",
            "data": {
                "kind": "web_visit",
                "channel": "web",
                "direction": "inbound",
                "identifiers": {"anonymous_id": "a1"},
                "web_visit": {},
            },
        }
    )


def named(topic: TopicSpec) -> str:
    """Return a topic's name as a test deployment would."""
    return f"test.{topic.name}"


def row(record: OutgoingRecord) -> Row:
    """Return a record as a row."""
    return (record.topic, record.key, record.value, record.headers)


def test_an_encoded_event_is_the_record_its_model_makes() -> None:
    event = touchpoint()
    encoded = EncodedEvent.of(OutgoingEvent(topics.TOUCHPOINTS, "k", event, 1_700_000_000_000))
    expected = to_record(named(topics.TOUCHPOINTS), "k", event, 1_700_000_000_000)
    assert encoded_rows([encoded], named) == [row(expected)]
    assert encoded.event_type == TouchpointRecorded.EVENT_TYPE


def test_type_and_schema_version_come_from_the_contract_class() -> None:
    event = touchpoint()
    encoded = EncodedEvent(topics.TOUCHPOINTS, "k", TouchpointRecorded, event.event_id, b"{}")
    ((_, _, _, headers),) = encoded_rows([encoded], named)
    assert header(headers, HEADER_TYPE) == TouchpointRecorded.EVENT_TYPE.encode()
    assert header(headers, HEADER_SCHEMA_VERSION) == str(TouchpointRecorded.SCHEMA_VERSION).encode()


def test_a_tombstone_has_no_value_and_no_headers() -> None:
    assert encoded_rows([EncodedEvent(topics.PROFILES, "p-1")], named) == [
        ("test.profiles.v1", b"p-1", None, [])
    ]
    assert EncodedEvent(topics.PROFILES, "p-1").event_type is None


def test_an_encoded_event_is_a_frozen_value() -> None:
    encoded = EncodedEvent(topics.PROFILES, "p-1", ProfileChangedEvent, "e-1", b"{}")
    assert encoded == EncodedEvent(topics.PROFILES, "p-1", ProfileChangedEvent, "e-1", b"{}")
    with pytest.raises(AttributeError):
        encoded.key = "p-2"  # type: ignore[misc]


def test_a_batch_carries_each_cause_s_trace_and_accept_time_as_one_event_would() -> None:
    scope = tracing.BatchTrace("test")
    scope.add("cause-1", "touchpoints", 0, 0, [("traceparent", PARENT)])
    scope.add("cause-2", "touchpoints", 0, 1, [("traceparent", PARENT.replace(b"b7", b"c8"))])
    events = [
        EncodedEvent(topics.PROFILES, "p-1", ProfileChangedEvent, "e-1", b"{}", 5, "cause-1"),
        EncodedEvent(topics.PROFILES, "p-2", ProfileChangedEvent, "e-2", b"{}", 5, "cause-2"),
        EncodedEvent(topics.TOUCHPOINTS, "k", TouchpointRecorded, "e-3", b"{}", 7, "cause-1"),
        EncodedEvent(topics.PROFILES, "p-3", ProfileChangedEvent, "e-4", b"{}", None, "other"),
        EncodedEvent(topics.PROFILES, "p-4"),
    ]
    with scope:
        rows = encoded_rows(events, named)
        expected = [
            OutgoingRecord(named(e.topic), e.key.encode(), e.value)
            if e.contract is None
            else row_of(e, tracing.derived(e.causation_id))
            for e in events
        ]
    assert rows == [row(r) if isinstance(r, OutgoingRecord) else r for r in expected]
    assert TraceContext.from_headers(rows[0][3]) != TraceContext.from_headers(rows[1][3])
    assert TraceContext.from_headers(rows[3][3]) is None


def test_events_derived_inside_a_request_carry_the_request_s_trace() -> None:
    events = [
        EncodedEvent(topics.PROFILES, f"p-{n}", ProfileChangedEvent, f"e-{n}", b"{}")
        for n in range(2)
    ]
    with tracing.request_context({"headers": [(b"traceparent", PARENT)]}):
        rows = encoded_rows(events, named)
    assert [TraceContext.from_headers(r[3]) for r in rows] == [
        TraceContext.from_headers([("traceparent", PARENT)])
    ] * 2


def test_deferred_work_carries_the_trace_kept_with_it() -> None:
    kept = TraceContext.new()
    event = touchpoint()
    out = OutgoingEvent(topics.TOUCHPOINTS, "k", event, 1, trace=kept)
    with tracing.request_context({"headers": [(b"traceparent", PARENT)]}):
        rows = encoded_rows([EncodedEvent.of(out)], named)
    assert rows == [row(to_record(named(topics.TOUCHPOINTS), "k", event, 1, trace=kept))]
    assert TraceContext.from_headers(rows[0][3]) == kept


def row_of(encoded: EncodedEvent, trace: TraceContext | None) -> Row:
    """Return the row the one-event builder makes of an encoded event."""
    assert encoded.contract is not None
    assert encoded.value is not None
    record = to_record(
        named(encoded.topic),
        encoded.key,
        encoded.contract.model_construct(
            event_id=encoded.event_id, causation_id=encoded.causation_id
        ),
        encoded.accepted_at_ms,
        trace=trace,
    )
    return (record.topic, record.key, encoded.value, record.headers)
